// In-page functions the browser benchmark (scripts/bench-web.sh → web/bench/bench.mjs)
// and the CCTV test (web/test/cctv.test.mjs) call through Playwright. Not the recipient
// page: no UI, just the crypto paths and a discard sink.

import { Decrypter, Encrypter, generateIdentity, identityToRecipient } from "age-encryption";
import sodium from "libsodium-wrappers";
import { drainInto, passThrough } from "../src/bytes";
import { decryptAge as decryptAgeParallel, type PayloadPath } from "../src/crypto/parallel";
import { decryptAge as decryptAgeWasm, payloadEngine, type Secret } from "../src/crypto/stream-wasm";

const PIECE = 64 * 1024;

/**
 * Which payload path a call runs: "single" is stream-wasm.ts on this thread, "parallel"
 * is parallel.ts with its workers loaded from this origin's /web/decrypt-worker.js
 * (the server's, or the test server's bundle of src/crypto/worker.ts).
 */
type Path = "single" | "parallel";

/** Options for the parallel path (tests use small batches to cross batch boundaries). */
interface ParallelKnobs {
  workers?: number;
  batchChunks?: number;
  workerUrl?: string;
}

/** The last path parallel.ts reported, for the tests to check. */
let lastPath: PayloadPath | null = null;

async function decryptVia(
  path: Path,
  ciphertext: ReadableStream<Uint8Array>,
  secret: Secret,
  knobs: ParallelKnobs = {},
): Promise<ReadableStream<Uint8Array>> {
  if (path === "single") return decryptAgeWasm(ciphertext, secret);
  lastPath = null;
  return decryptAgeParallel(ciphertext, secret, { ...knobs, onPath: (p) => (lastPath = p) });
}

/**
 * Drains a stream as the page's save picker does (bytes.ts's drainInto: one reused 1 MiB
 * buffer), counting bytes and (optionally) checking them against `expect`.
 */
async function drain(stream: ReadableStream<Uint8Array>, expect?: Uint8Array): Promise<number> {
  let total = 0;
  await drainInto(stream, (value) => {
    if (expect) {
      for (let i = 0; i < value.length; i += 4099) {
        if (value[i] !== expect[total + i]) throw new Error(`plaintext differs at byte ${total + i}`);
      }
    }
    total += value.length;
  });
  if (expect && total !== expect.length) throw new Error(`got ${total} bytes, want ${expect.length}`);
  return total;
}

/** The ciphertext as a stream of 64 KiB pieces, as a network body might arrive. */
function pieces(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + PIECE));
      offset += PIECE;
    },
  });
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

let micro: { plaintext: Uint8Array; ciphertext: Uint8Array; identity: string } | null = null;

/** Encrypts `mib` MiB of random bytes to a fresh X25519 identity, once per page. */
async function microSetup(mib: number): Promise<number> {
  const identity = await generateIdentity();
  const enc = new Encrypter();
  enc.addRecipient(await identityToRecipient(identity));
  const plaintext = randomBytes(mib * 1024 * 1024);
  micro = { plaintext, ciphertext: await enc.encrypt(plaintext), identity };
  return micro.ciphertext.length;
}

/** One timed decryption of the setup file; returns milliseconds. */
async function microRound(path: "js" | "wasm" | "parallel" | "sodium-raw"): Promise<number> {
  if (!micro) throw new Error("microSetup first");
  const { plaintext, ciphertext, identity } = micro;
  const t0 = performance.now();
  if (path === "js") {
    const d = new Decrypter();
    d.addIdentity(identity);
    await drain(await d.decrypt(pieces(ciphertext)), plaintext);
  } else if (path === "wasm") {
    await drain(await decryptAgeWasm(pieces(ciphertext), { identity }), plaintext);
  } else if (path === "parallel") {
    await drain(await decryptVia("parallel", pieces(ciphertext), { identity }), plaintext);
  } else {
    // The bare primitive on 64 KiB chunks: the ceiling for any STREAM built on it.
    await sodium.ready;
    const key = sodium.randombytes_buf(32);
    const nonce = new Uint8Array(12);
    const chunk = randomBytes(PIECE);
    const sealed = sodium.crypto_aead_chacha20poly1305_ietf_encrypt(chunk, null, null, nonce, key);
    const t1 = performance.now();
    for (let done = 0; done < plaintext.length; done += PIECE) {
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, null, nonce, key);
    }
    return performance.now() - t1;
  }
  return performance.now() - t0;
}

/** Fetches `url` and decrypts the body into a discard sink on `path`. */
async function fetchDecrypt(
  url: string,
  identity: string,
  path: Path = "single",
  knobs: ParallelKnobs = {},
): Promise<{ bytes: number; ms: number; path: PayloadPath | null }> {
  const t0 = performance.now();
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok || !res.body) throw new Error(`GET ${url}: ${res.status}`);
  const bytes = await drain(await decryptVia(path, res.body, { identity }, knobs));
  return { bytes, ms: performance.now() - t0, path: path === "parallel" ? lastPath : null };
}

/** Same fetch, body drained without decrypting. */
async function fetchOnly(url: string): Promise<{ bytes: number; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok || !res.body) throw new Error(`GET ${url}: ${res.status}`);
  const bytes = await drain(res.body);
  return { bytes, ms: performance.now() - t0 };
}

/** Decrypts one test vector; reports the outcome and the hash of what was released. */
async function decryptVector(
  base64: string,
  secret: Secret,
  path: Path = "single",
  knobs: ParallelKnobs = {},
): Promise<{
  error: string | null;
  message: string;
  releasedSha256: string;
  releasedBytes: number;
  path?: PayloadPath | null;
}> {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const released: Uint8Array[] = [];
  let error: string | null = null;
  let message = "";
  try {
    const reader = (await decryptVia(path, pieces(bytes), secret, knobs)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      released.push(value);
    }
  } catch (e) {
    error = e instanceof Error ? e.name : String(e);
    message = e instanceof Error ? e.message : "";
  }
  const all = new Uint8Array(released.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of released) {
    all.set(c, at);
    at += c.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return {
    error,
    message,
    releasedSha256: hex,
    releasedBytes: all.length,
    ...(path === "parallel" ? { path: lastPath } : {}),
  };
}

/**
 * Encrypts `size` random bytes with age-encryption, optionally alters the ciphertext
 * ("truncate" drops its last byte, "extend" appends one, "flip" changes one byte in the
 * last chunk, or in the nonce of an empty file; "flip-middle" one byte of chunk 2 of a
 * file of at least 3 chunks; "cut-chunk" drops the whole last chunk, so the file ends
 * on a chunk boundary), and decrypts it fed in `piece`-byte pieces on `path`.
 */
async function roundTrip(
  size: number,
  piece: number,
  alter: "none" | "truncate" | "extend" | "flip" | "flip-middle" | "cut-chunk",
  secret: "identity" | "passphrase",
  path: Path = "single",
  knobs: ParallelKnobs = {},
): Promise<{
  error: string | null;
  message: string;
  releasedBytes: number;
  matches: boolean;
  path?: PayloadPath | null;
}> {
  const plaintext = randomBytes(size);
  const enc = new Encrypter();
  let key: Secret;
  if (secret === "identity") {
    const identity = await generateIdentity();
    enc.addRecipient(await identityToRecipient(identity));
    key = { identity };
  } else {
    enc.setPassphrase("correct horse");
    enc.setScryptWorkFactor(10);
    key = { passphrase: "correct horse" };
  }
  let ct = await enc.encrypt(plaintext);
  if (alter === "truncate") ct = ct.subarray(0, ct.length - 1);
  if (alter === "extend") ct = concatBytes(ct, Uint8Array.of(0));
  if (alter === "flip") ct[ct.length - Math.min(size, 100) - 17]! ^= 1;
  const sealed = PIECE + 16;
  const chunks = Math.max(1, Math.ceil(size / PIECE));
  const payloadStart = ct.length - (size + 16 * chunks);
  if (alter === "flip-middle") {
    if (size < 2 * PIECE + 1) throw new Error("flip-middle needs at least 3 chunks");
    ct[payloadStart + sealed + 1000]! ^= 1;
  }
  if (alter === "cut-chunk") {
    const lastChunk = size % PIECE === 0 ? sealed : (size % PIECE) + 16;
    ct = ct.subarray(0, ct.length - lastChunk);
  }
  let offset = 0;
  // `piece` 0: a byte stream read as the page reads a download (a body arriving a few KB
  // per read, behind bytes.ts's passThrough; the plaintext drained through one reused
  // buffer smaller than a batch); otherwise a default stream of `piece`-byte chunks read
  // the default way.
  const bytes = piece === 0;
  const input = bytes
    ? passThrough(trickle(ct, 5000))
    : new ReadableStream<Uint8Array>({
        pull(controller) {
          if (offset >= ct.length) return controller.close();
          controller.enqueue(ct.slice(offset, offset + piece));
          offset += piece;
        },
      });
  const got: Uint8Array[] = [];
  let error: string | null = null;
  let message = "";
  try {
    const plain = await decryptVia(path, input, key, knobs);
    if (bytes) {
      await drainInto(plain, (value) => void got.push(value.slice()), 50_000);
    } else {
      const reader = plain.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        got.push(value);
      }
    }
  } catch (e) {
    error = e instanceof Error ? e.name : String(e);
    message = e instanceof Error ? e.message : "";
  }
  let at = 0;
  let matches = true;
  for (const c of got) {
    for (let i = 0; i < c.length; i++) if (c[i] !== plaintext[at + i]) matches = false;
    at += c.length;
  }
  return { error, message, releasedBytes: at, matches, ...(path === "parallel" ? { path: lastPath } : {}) };
}

/**
 * `bytes` as a byte stream that answers each read with at most `most` bytes, as a
 * network body does: a reader's buffer is rarely filled by one read.
 */
function trickle(bytes: Uint8Array, most: number): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      const request = controller.byobRequest;
      if (request?.view) {
        const n = Math.min(most, request.view.byteLength, bytes.length - offset);
        new Uint8Array(request.view.buffer, request.view.byteOffset, n).set(bytes.subarray(offset, offset + n));
        offset += n;
        request.respond(n);
      } else {
        controller.enqueue(bytes.slice(offset, offset + most));
        offset += most;
      }
    },
  });
}

/** A file sealed to a fresh identity, opened with `identity` instead. */
async function decryptOtherKey(identity: string): Promise<{ error: string | null; releasedBytes: number }> {
  const enc = new Encrypter();
  enc.addRecipient(await identityToRecipient(await generateIdentity()));
  const ct = await enc.encrypt(randomBytes(1000));
  try {
    const bytes = await drain(await decryptAgeWasm(pieces(ct), { identity }));
    return { error: null, releasedBytes: bytes };
  } catch (e) {
    return { error: e instanceof Error ? e.name : String(e), releasedBytes: 0 };
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

(globalThis as unknown as { hd: unknown }).hd = {
  roundTrip,
  decryptOtherKey,
  payloadEngine,
  age: { generateIdentity },
  microSetup,
  microRound,
  fetchDecrypt,
  fetchOnly,
  decryptVector,
  wasmInUse: () => typeof WebAssembly === "object",
};
