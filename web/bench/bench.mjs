// Browser side of scripts/bench-web.sh. In one run, interleaved rounds of:
//   (a)  Chromium: fetch the link's ciphertext → parallel.ts decryptAge (the page's path:
//        payload chunks opened in dedicated workers loaded from the server's
//        /web/decrypt-worker.js) → discard sink
//   (a1) the same with stream-wasm.ts's single-thread decryptAge (the service worker's path)
//   (b)  Chromium: fetch the same ciphertext → discard sink (no decryption)
//   (c)  `hashdrop decrypt LINK OUT` of the same link
// then, in a fresh page of the same browser, the payload micro-benchmark: age-encryption's
// pure-JS STREAM vs stream-wasm vs the parallel workers vs libsodium's bare AEAD on
// 64 KiB chunks.
// Prints one JSON object on stdout; the shell script turns it into the report.
//
// usage: node bench.mjs --link LINK --cli PATH --out FILE --rounds N --micro-mib M
import { spawn } from "node:child_process";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { harnessBundle, launch, openHarness } from "./browser.mjs";

const { values: opt } = parseArgs({
  options: {
    link: { type: "string" },
    cli: { type: "string" },
    out: { type: "string" },
    rounds: { type: "string", default: "3" },
    "micro-mib": { type: "string", default: "64" },
    "micro-rounds": { type: "string", default: "5" },
  },
});
const link = new URL(opt.link);
const identity = link.hash.slice(1);
const fileId = link.pathname.split("/").pop();
const rounds = Number(opt.rounds);

// ---- memory: the summed RSS of every Chromium process under this node process ------
function children() {
  const byParent = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid …; comm may contain spaces, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!byParent.has(ppid)) byParent.set(ppid, []);
      byParent.get(ppid).push(Number(entry));
    } catch {
      // the process exited while we looked
    }
  }
  return byParent;
}

function browserRssBytes() {
  const byParent = children();
  let total = 0;
  const stack = [...(byParent.get(process.pid) ?? [])];
  while (stack.length) {
    const pid = stack.pop();
    stack.push(...(byParent.get(pid) ?? []));
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      if (!/^Name:\s*chrom/m.test(status)) continue;
      const rss = /^VmRSS:\s*(\d+) kB/m.exec(status);
      if (rss) total += Number(rss[1]) * 1024;
    } catch {
      // exited
    }
  }
  return total;
}

/** Runs `fn` while sampling browser RSS every 50 ms; returns its result and the peak. */
async function sampled(fn) {
  const baseline = browserRssBytes();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, browserRssBytes());
  }, 50);
  try {
    const result = await fn();
    peak = Math.max(peak, browserRssBytes());
    return { ...result, baseline, peak };
  } finally {
    clearInterval(timer);
  }
}

// ---- (c) the CLI --------------------------------------------------------------------
function cliDecrypt() {
  rmSync(opt.out, { force: true });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(opt.cli, ["decrypt", opt.link, opt.out], { stdio: ["ignore", "ignore", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) return reject(new Error(`hashdrop decrypt exited ${code}`));
      resolve({ ms });
    });
  });
}

// ---- run ------------------------------------------------------------------------------
const bundle = await harnessBundle();
const browser = await launch();
const result = { rounds: [], micro: [] };
try {
  const page = await openHarness(browser, `${link.origin}/api/healthz`, bundle);
  // The link's ciphertext, as the recipient page reaches it: share facts, then the
  // download URL (a redirect to the blob), fetched with no-store so no round is
  // served from the browser cache.
  const downloadUrl = async () =>
    page.evaluate(async (id) => {
      const res = await fetch(`/api/share/${id}`, { cache: "no-store" });
      if (!res.ok) throw new Error(`share info: ${res.status}`);
      return (await res.json()).download_url;
    }, fileId);
  const plaintextBytes = Number(process.env.BENCH_PLAINTEXT_BYTES);

  for (let round = 1; round <= rounds; round++) {
    await page.evaluate(() => new Promise((r) => setTimeout(r, 500))); // let the previous round's garbage settle
    const decrypt = async (path) => {
      const got = await sampled(async () =>
        page.evaluate(([u, k, p]) => globalThis.hd.fetchDecrypt(u, k, p), [await downloadUrl(), identity, path]),
      );
      if (got.bytes !== plaintextBytes) throw new Error(`${path} released ${got.bytes} bytes, want ${plaintextBytes}`);
      if (path === "parallel" && got.path?.path !== "parallel") {
        throw new Error(`the parallel path did not run: ${JSON.stringify(got.path)}`);
      }
      return got;
    };
    const a = await decrypt("parallel");
    await page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
    const a1 = await decrypt("single");
    await page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
    const b = await sampled(async () => page.evaluate((u) => globalThis.hd.fetchOnly(u), await downloadUrl()));
    const c = await cliDecrypt();
    const row = { round, a, a1, b, c };
    result.rounds.push(row);
    const mbs = (x) => (plaintextBytes / x.ms / 1e3).toFixed(0);
    const grow = (x) => ((x.peak - x.baseline) / 2 ** 20).toFixed(0);
    console.error(
      `round ${round}: (a) ${mbs(a)} MB/s (${a.path.workers} workers, ${a.path.engine}), (a1) ${mbs(a1)} MB/s, ` +
        `(b) ${mbs(b)} MB/s, (c) ${mbs(c)} MB/s; browser RSS +${grow(a)} MiB in (a), +${grow(a1)} MiB in (a1)`,
    );
  }
  result.wasmInstances = await page.evaluate(() => globalThis.__wasmInstances);
  result.hardwareConcurrency = await page.evaluate(() => navigator.hardwareConcurrency);
  await page.close();

  const microPage = await openHarness(browser, `${link.origin}/api/healthz`, bundle);
  const mib = Number(opt["micro-mib"]);
  await microPage.evaluate((m) => globalThis.hd.microSetup(m), mib);
  for (let round = 1; round <= Number(opt["micro-rounds"]); round++) {
    for (const path of ["js", "wasm", "parallel", "sodium-raw"]) {
      const ms = await microPage.evaluate((p) => globalThis.hd.microRound(p), path);
      result.micro.push({ round, path, ms, bytes: mib * 2 ** 20 });
    }
  }
  result.microWasmInstances = await microPage.evaluate(() => globalThis.__wasmInstances);
  result.chromium = browser.version();
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
