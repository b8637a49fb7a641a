// Shared by the benchmark and the browser test: bundle the harness with esbuild and
// drive Debian's Chromium through playwright-core (no browser download).
import { build } from "esbuild";
import { chromium } from "playwright-core";
import http from "node:http";
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

/** A worker script bundled the way web/build.mjs bundles the real one (classic, one file). */
async function workerBundle(entry) {
  const out = await build({
    entryPoints: [fileURLToPath(new URL(entry, import.meta.url))],
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "error",
  });
  return out.outputFiles[0].text;
}

/**
 * A local origin for the harness tests: a blank page at `/`, the decryption worker at
 * `/web/decrypt-worker.js` (where the server serves it), a worker that fails on its
 * second batch at `/test/broken-worker.js`, and, with `harness`, the harness bundle at
 * `/harness.js` loaded by the page (for pages whose CSP forbids an injected script).
 * Every answer carries `csp` when given.
 */
export async function serveTestOrigin({ csp = null, harness = null } = {}) {
  const files = {
    "/web/decrypt-worker.js": await workerBundle("../src/crypto/worker.ts"),
    "/test/broken-worker.js": await workerBundle("./broken-worker.ts"),
    // A service worker that answers a message with whether it can construct a Worker.
    "/test/sw-probe.js":
      'self.addEventListener("message", (e) => e.source.postMessage(typeof Worker));' +
      'self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));',
  };
  if (harness) files["/harness.js"] = harness;
  const server = http.createServer((req, res) => {
    if (csp) res.setHeader("content-security-policy", csp);
    const path = new URL(req.url, "http://x").pathname;
    if (files[path] !== undefined) {
      res.setHeader("content-type", "text/javascript");
      res.end(files[path]);
    } else if (path === "/") {
      res.setHeader("content-type", "text/html");
      const script = harness ? '<script src="/harness.js"></script>' : "";
      res.end(`<!doctype html><title>harness</title>${script}`);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
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
