// Shared by the benchmark and the browser test: bundle the harness with esbuild and
// drive Debian's Chromium through playwright-core (no browser download).
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { fileURLToPath } from "node:url";

export const CHROMIUM = process.env.HASHDROP_TEST_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The harness bundle (web/bench/harness.ts and what it imports) as one script. */
export async function harnessBundle() {
  const entry = fileURLToPath(new URL("./harness.ts", import.meta.url));
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "error",
  });
  return out.outputFiles[0].text;
}

export function launch(executablePath = CHROMIUM) {
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
}

/**
 * Opens `origin` (any page of it: the harness then fetches same-origin, no CORS) and
 * loads the harness into it. Counts WebAssembly instantiations so a caller can tell
 * that libsodium really runs as WASM and did not fall back to its asm.js build.
 */
export async function openHarness(browser, originUrl, bundle) {
  const page = await browser.newPage();
  await page.addInitScript(() => {
    globalThis.__wasmInstances = 0;
    for (const name of ["instantiate", "instantiateStreaming"]) {
      const original = WebAssembly[name];
      if (!original) continue;
      WebAssembly[name] = function (...args) {
        globalThis.__wasmInstances++;
        return original.apply(this, args);
      };
    }
  });
  await page.goto(originUrl);
  await page.addScriptTag({ content: bundle });
  return page;
}
