// How long the recipient page takes to open a passphrase-mode file in Chromium, per
// scrypt work factor: the time from starting decryptAge (the page's own module,
// bundled the same way) until the header is verified, which is almost all scrypt.
//
//   HASHDROP_TEST_CHROMIUM=/usr/bin/chromium node bench/scrypt.mjs [logN ...] [--runs N]
//
// Prints the median, min and max of N runs (default 5) per work factor.

import { build } from "esbuild";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Encrypter } from "age-encryption";

const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const runs = runsAt >= 0 ? Number(args.splice(runsAt, 2)[1]) : 5;
const factors = args.length ? args.map(Number) : [16, 17, 18];
const executablePath = process.env.HASHDROP_TEST_CHROMIUM;
if (!executablePath) {
  console.error("set HASHDROP_TEST_CHROMIUM to a Chromium binary");
  process.exit(2);
}

const here = dirname(fileURLToPath(import.meta.url));
const bundle = await build({
  entryPoints: [join(here, "scrypt-entry.ts")],
  bundle: true,
  minify: true,
  write: false,
  format: "iife",
});
const script = bundle.outputFiles[0].text;

const userDataDir = await mkdtemp(join(tmpdir(), "hashdrop-bench-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await context.newPage();
await page.setContent("<!doctype html><title>scrypt bench</title>");
await page.addScriptTag({ content: script });
console.log(`Chromium ${context.browser()?.version() ?? "(version unknown)"}, ${runs} runs each`);

const passphrase = "file passphrase 1";
for (const logN of factors) {
  const e = new Encrypter();
  e.setPassphrase(passphrase);
  e.setScryptWorkFactor(logN);
  const file = await e.encrypt(new Uint8Array(1024));
  const ms = [];
  for (let i = 0; i < runs; i++) {
    ms.push(
      await page.evaluate(
        async ({ bytes, passphrase }) => {
          const data = new Uint8Array(bytes);
          const source = new ReadableStream({
            start(c) {
              c.enqueue(data);
              c.close();
            },
          });
          const t0 = performance.now();
          const plain = await globalThis.decryptAge(source, { passphrase });
          const t1 = performance.now();
          await new Response(plain).arrayBuffer();
          return t1 - t0;
        },
        { bytes: Array.from(file), passphrase },
      ),
    );
  }
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)];
  console.log(
    `scrypt 2^${logN} (${(128 * 8 * 2 ** logN) / 2 ** 20} MiB): median ${median.toFixed(0)} ms, ` +
      `min ${ms[0].toFixed(0)} ms, max ${ms.at(-1).toFixed(0)} ms`,
  );
}
await context.close();
await rm(userDataDir, { recursive: true, force: true });
