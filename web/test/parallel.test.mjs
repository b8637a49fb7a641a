// parallel.ts (payload chunks opened in dedicated Web Workers) against files
// age-encryption writes: sizes around the chunk and batch boundaries, pieces that do
// and do not line up with chunks, and the damage a download can do — a flipped byte in
// a middle chunk, a file cut on a chunk boundary, cut inside a chunk, extended — which
// must fail exactly as the single-thread path fails. Workers come from the test
// origin's /web/decrypt-worker.js, bundled from src/crypto/worker.ts like build.mjs does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { harnessBundle, launch, openHarness, serveTestOrigin } from "../bench/browser.mjs";
import { chromiumOrSkip } from "./browser-env.mjs";

const CHUNK = 65536;
const SEALED = CHUNK + 16;

async function withHarness(t, fn, originOptions = {}) {
  const executable = chromiumOrSkip(t);
  if (!executable) return;
  const bundle = await harnessBundle();
  const origin = await serveTestOrigin({ ...originOptions, harness: originOptions.csp ? bundle : null });
  const browser = await launch(executable);
  try {
    let page;
    if (originOptions.csp) {
      page = await browser.newPage();
      await page.goto(origin.url);
    } else {
      page = await openHarness(browser, origin.url, bundle);
    }
    await fn(page);
  } finally {
    await browser.close();
    origin.close();
  }
}

const run = (page, size, piece, alter, knobs = {}, secret = "identity", path = "parallel") =>
  page.evaluate((a) => globalThis.hd.roundTrip(...a), [size, piece, alter, secret, path, knobs]);

const PARALLEL = { path: "parallel", workers: 2, engine: "wasm" };

test("parallel workers open what age-encryption seals, at every chunk and batch boundary", async (t) => {
  await withHarness(t, async (page) => {
    const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5, 16 * CHUNK, 16 * CHUNK + 1, 17 * CHUNK, 40 * CHUNK - 3];
    for (const batchChunks of [1, 2, 16]) {
      for (const size of sizes) {
        // 0: a byte stream read into the decryptor's recycled batch buffers (the page's path).
        for (const piece of [SEALED, 1000, 3 * SEALED + 5, 0]) {
          if (piece === 1000 && size > 3 * CHUNK + 5) continue; // thousands of tiny pieces: slow, nothing new
          const got = await run(page, size, piece, "none", { workers: 2, batchChunks });
          assert.deepEqual(
            got,
            { error: null, message: "", releasedBytes: size, matches: true, path: PARALLEL },
            `size ${size} piece ${piece} batch ${batchChunks}`,
          );
        }
      }
    }
    // Four workers, and the browser's own default count.
    assert.deepEqual(await run(page, 20 * CHUNK + 9, SEALED, "none", { workers: 4, batchChunks: 1 }), {
      error: null,
      message: "",
      releasedBytes: 20 * CHUNK + 9,
      matches: true,
      path: { ...PARALLEL, workers: 4 },
    });
    const byDefault = await run(page, 5 * CHUNK, SEALED, "none");
    assert.equal(byDefault.error, null);
    assert.equal(byDefault.path.path, "parallel");
    // A passphrase file: scrypt on this thread while the workers start.
    assert.deepEqual(await run(page, 70_000, 4096, "none", { workers: 2 }, "passphrase"), {
      error: null,
      message: "",
      releasedBytes: 70_000,
      matches: true,
      path: PARALLEL,
    });
  });
});

test("parallel workers fail a flipped middle chunk, a cut or an extended file, like the single thread", async (t) => {
  await withHarness(t, async (page) => {
    for (const batchChunks of [1, 2, 16]) {
      const knobs = { workers: 2, batchChunks };
      // One flipped byte in chunk 2: chunk 1 is released, then the error; never more.
      for (const size of [3 * CHUNK, 5 * CHUNK + 7, 40 * CHUNK]) {
        for (const [path, piece] of [["single", SEALED], ["parallel", SEALED], ["parallel", 0]]) {
          const got = await run(page, size, piece, "flip-middle", knobs, "identity", path);
          assert.equal(got.error, "DamagedFileError", `${path} size ${size} batch ${batchChunks}: ${JSON.stringify(got)}`);
          assert.ok(got.matches);
          assert.equal(got.releasedBytes, CHUNK, `${path}/${piece} size ${size} batch ${batchChunks}`);
        }
      }
      // The whole last chunk gone: the file now ends on a chunk boundary with no last
      // chunk, on a batch boundary too for 17 and 33 chunks with batches of 16.
      for (const size of [2 * CHUNK, 3 * CHUNK + 5, 17 * CHUNK, 33 * CHUNK, 33 * CHUNK + 1]) {
        const lastChunk = size % CHUNK === 0 ? CHUNK : size % CHUNK;
        for (const [path, piece] of [["single", SEALED], ["parallel", SEALED], ["parallel", 0]]) {
          const got = await run(page, size, piece, "cut-chunk", knobs, "identity", path);
          assert.equal(got.error, "DamagedFileError", `${path} size ${size} batch ${batchChunks}: ${JSON.stringify(got)}`);
          assert.ok(got.matches);
          assert.ok(got.releasedBytes <= size - lastChunk, `${path} size ${size}: released ${got.releasedBytes}`);
          if (path === "parallel") assert.deepEqual(got.path, PARALLEL);
        }
      }
      for (const size of [0, 100, CHUNK, 3 * CHUNK, 200_000]) {
        for (const [alter, piece] of [["truncate", 8192], ["extend", 8192], ["flip", 8192], ["truncate", 0], ["extend", 0]]) {
          const got = await run(page, size, piece, alter, knobs);
          assert.equal(got.error, "DamagedFileError", `size ${size} ${alter} batch ${batchChunks}: ${JSON.stringify(got)}`);
          assert.ok(got.matches, `size ${size} ${alter}: released bytes differ from the plaintext`);
          // Extended: the last chunk authenticates and is released before the extra
          // byte is seen, as on the single thread; the stream still errors.
          if (alter !== "extend") {
            assert.ok(got.releasedBytes < size || size === 0, `size ${size} ${alter}: released everything`);
          }
        }
      }
    }
  });
});

test("a worker that dies mid-file fails the file; workers that cannot load leave it to this thread", async (t) => {
  await withHarness(t, async (page) => {
    const size = 8 * CHUNK;
    const broken = await run(page, size, SEALED, "none", { workers: 2, batchChunks: 1, workerUrl: "/test/broken-worker.js" });
    assert.notEqual(broken.error, null, JSON.stringify(broken));
    assert.match(broken.message, /decryption worker failed/);
    assert.ok(broken.matches);
    assert.ok(broken.releasedBytes < size, `released ${broken.releasedBytes} of ${size}`);

    // A worker script that is not there (404) is found before any payload byte is read.
    const missing = await run(page, size, SEALED, "none", { workerUrl: "/web/no-such-worker.js" });
    assert.equal(missing.error, null, JSON.stringify(missing));
    assert.equal(missing.releasedBytes, size);
    assert.ok(missing.matches);
    assert.equal(missing.path.path, "single");
    assert.match(missing.path.reason, /did not start/);
  });
});

test("Chromium's service workers cannot start dedicated workers (so the service-worker save path runs on one thread)", async (t) => {
  await withHarness(t, async (page) => {
    const answer = await page.evaluate(async () => {
      const reg = await navigator.serviceWorker.register("/test/sw-probe.js", { scope: "/test/" });
      const sw = reg.installing ?? reg.waiting ?? reg.active;
      if (sw.state !== "activated") {
        await new Promise((r) => sw.addEventListener("statechange", () => sw.state === "activated" && r()));
      }
      return new Promise((resolve) => {
        navigator.serviceWorker.addEventListener("message", (m) => resolve(m.data), { once: true });
        sw.postMessage("probe");
      });
    });
    assert.equal(answer, "undefined");
    assert.equal(await page.evaluate(() => typeof Worker), "function");
  });
});

test("where the CSP forbids WebAssembly, the workers open the payload in pure JS with the same results", async (t) => {
  await withHarness(
    t,
    async (page) => {
      for (const size of [0, CHUNK, 200_000]) {
        assert.deepEqual(await run(page, size, 5000, "none", { workers: 2, batchChunks: 1 }), {
          error: null,
          message: "",
          releasedBytes: size,
          matches: true,
          path: { ...PARALLEL, engine: "js" },
        });
        const cut = await run(page, size, 5000, "cut-chunk", { workers: 2, batchChunks: 1 });
        if (size > 0) assert.equal(cut.error, "DamagedFileError");
      }
    },
    { csp: "default-src 'none'; script-src 'self'; connect-src 'self'; worker-src 'self'" },
  );
});
