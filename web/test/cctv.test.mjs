// The C2SP CCTV age vectors, decrypted in real Chromium by web/src/crypto/stream-wasm.ts
// (one thread) and by web/src/crypto/parallel.ts (workers; batches of one chunk, so
// every chunk rule crosses a worker and batch boundary, and of 16 chunks, so the rules
// inside a batch run too). Each vector names an outcome (success / no match / HMAC,
// header, payload or armor failure) and, where any plaintext comes out, the SHA-256 of
// it; we check both on every path, the way crates/hashdrop-crypto/tests/cctv.rs does
// for the Rust side.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { inflateSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { harnessBundle, launch, openHarness, serveTestOrigin } from "../bench/browser.mjs";
import { chromiumOrSkip } from "./browser-env.mjs";

const repoRoot = path.resolve(fileURLToPath(new URL("../..", import.meta.url)));

function vectorsDir() {
  if (process.env.HASHDROP_AGE_VECTORS) return process.env.HASHDROP_AGE_VECTORS;
  const inRepo = path.join(repoRoot, "crates/hashdrop-crypto/tests/vectors/age-cctv");
  if (existsSync(inRepo)) return inRepo;
  return path.join(repoRoot, "../shared/testvectors/age-cctv");
}

function loadVector(file) {
  const raw = readFileSync(file);
  const split = raw.indexOf("\n\n");
  assert.ok(split > 0, `${file}: no header block`);
  const meta = {};
  for (const line of raw.subarray(0, split).toString("utf8").split("\n")) {
    const at = line.indexOf(": ");
    const key = line.slice(0, at);
    (meta[key] ??= []).push(line.slice(at + 2));
  }
  let body = raw.subarray(split + 2);
  if (meta.compressed?.[0] === "zlib") body = inflateSync(body);
  return { name: path.basename(file), meta, body };
}

/** The secret decryptAge takes, or why this vector cannot be expressed as one. */
function secretFor(v) {
  if (v.meta.passphrase) return { secret: { passphrase: v.meta.passphrase[0] } };
  const ids = v.meta.identity ?? [];
  if (ids.length === 0) return { skip: "no identity or passphrase given" };
  if (ids.length > 1) return { skip: "several identities: decryptAge takes one, as a share link carries one" };
  return { secret: { identity: ids[0] } };
}

const EXPECTED_ERROR = {
  success: [null],
  "no match": ["WrongKeyError", "WrongPassphraseError"],
  "HMAC failure": ["DamagedFileError"],
  "header failure": ["DamagedFileError"],
  "payload failure": ["DamagedFileError"],
  "armor failure": ["DamagedFileError"],
};

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

test("CCTV age vectors decrypt in Chromium as the vectors say", async (t) => {
  const executable = chromiumOrSkip(t);
  if (!executable) return;
  const dir = vectorsDir();
  const files = readdirSync(dir).sort().map((f) => path.join(dir, f));
  assert.ok(files.length > 100, `expected the full CCTV age suite in ${dir}`);

  const origin = await serveTestOrigin();
  const browser = await launch(executable);
  const paths = [
    ["single", {}],
    ["parallel", { workers: 2, batchChunks: 1 }],
    ["parallel", { workers: 2, batchChunks: 16 }],
  ];
  try {
    const page = await openHarness(browser, origin.url, await harnessBundle());
    let passed = 0;
    const skipped = new Map();
    const failures = [];
    for (const file of files) {
      const v = loadVector(file);
      const expect = v.meta.expect[0];
      const { secret, skip } = secretFor(v);
      if (skip) {
        skipped.set(skip, [...(skipped.get(skip) ?? []), v.name]);
        continue;
      }
      const allowed = EXPECTED_ERROR[expect];
      assert.ok(allowed, `${v.name}: unknown expectation ${expect}`);
      const payload = v.meta.payload?.[0] ?? EMPTY_SHA256;
      const problems = [];
      for (const [path, knobs] of paths) {
        const label = path === "single" ? "single" : `parallel/${knobs.batchChunks}`;
        const got = await page.evaluate(([b64, s, p, k]) => globalThis.hd.decryptVector(b64, s, p, k), [
          v.body.toString("base64"),
          secret,
          path,
          knobs,
        ]);
        if (!allowed.includes(got.error)) {
          problems.push(`${label}: expected ${expect}, got ${got.error ?? "success"} ${got.message}`);
        }
        if (got.releasedSha256 !== payload) {
          problems.push(`${label}: released ${got.releasedBytes} bytes hashing to ${got.releasedSha256}, want ${payload}`);
        }
        // The workers ran, unless the header failed first (then no path is chosen).
        if (path === "parallel" && got.path && got.path.path !== "parallel") {
          problems.push(`${label}: ran on ${JSON.stringify(got.path)}`);
        }
        if (path === "parallel" && expect === "success" && got.path?.path !== "parallel") {
          problems.push(`${label}: the parallel path did not run (${JSON.stringify(got.path)})`);
        }
      }
      if (problems.length === 0) passed++;
      else failures.push(`${v.name}: ${problems.join("; ")}`);
    }
    const skipCount = [...skipped.values()].reduce((n, l) => n + l.length, 0);
    console.log(
      `CCTV age vectors in Chromium, each on the single-thread path and in workers with batches of 1 and 16 chunks: ` +
        `${passed} passed, ${failures.length} failed, ${skipCount} skipped (from ${dir})`,
    );
    for (const [why, names] of skipped) console.log(`  skipped ${names.length} (${why}): ${names.join(", ")}`);
    assert.deepEqual(failures, []);
    assert.equal(passed + skipCount, files.length);
  } finally {
    await browser.close();
    origin.close();
  }
});
