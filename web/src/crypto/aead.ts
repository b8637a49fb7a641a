// The payload cipher of age's STREAM (ChaCha20-Poly1305, IETF 12-byte nonce), as one
// function both the page's single-thread path (stream-wasm.ts) and the decryption
// workers (worker.ts) call: libsodium's WebAssembly build where WebAssembly may run,
// @noble/ciphers' pure JS where it may not. No DOM access, no age-encryption: this
// module is bundled into the worker, which never sees a header.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import sodium from "libsodium-wrappers";

/** Plaintext bytes per STREAM chunk (all but the last are exactly this long). */
export const CHUNK_BYTES = 64 * 1024;
/** Poly1305 tag after each chunk. */
export const TAG_BYTES = 16;
/** A full chunk as stored: plaintext plus tag. */
export const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES;

/**
 * Opens one sealed chunk, or returns null when it does not authenticate. The result of
 * the variant payloadAead(true) may give is only valid until the next call.
 */
export type Aead = (sealed: Uint8Array, nonce: Uint8Array, key: Uint8Array) => Uint8Array | null;

const sodiumAead: Aead = (sealed, nonce, key) => {
  try {
    return sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, sealed, null, nonce, key);
  } catch {
    return null;
  }
};

const nobleAead: Aead = (sealed, nonce, key) => {
  try {
    return chacha20poly1305(key, nonce).decrypt(sealed);
  } catch {
    return null;
  }
};

/** libsodium's raw exports (the wrapper's `libsodium` property), as far as used here. */
interface SodiumModule {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _crypto_aead_chacha20poly1305_ietf_decrypt(
    m: number,
    mlenP: number,
    nsec: number,
    c: number,
    clenLow: number,
    clenHigh: number,
    ad: number,
    adlenLow: number,
    adlenHigh: number,
    npub: number,
    k: number,
  ): number;
}

/**
 * The same libsodium function called on buffers kept in the WASM heap for the life of
 * the caller (one decryption worker): the chunk is copied in, opened in place, and the
 * result is a view of the heap, valid only until the next call. The wrapper's
 * function instead allocates and frees heap buffers and returns a fresh 64 KiB array per
 * chunk; in a worker that garbage is all it produces, and freeing it is left to the
 * garbage collector, which on a 1 GiB file let the page's memory grow by over 100 MiB.
 * Returns null where the raw module is not reachable (the caller then uses the wrapper).
 */
function sodiumHeapAead(): Aead | null {
  const lib = (sodium as unknown as { libsodium?: SodiumModule }).libsodium;
  if (!lib || typeof lib._crypto_aead_chacha20poly1305_ietf_decrypt !== "function" || typeof lib._malloc !== "function") {
    return null;
  }
  const keyAt = lib._malloc(32);
  const nonceAt = lib._malloc(12);
  const inAt = lib._malloc(SEALED_CHUNK_BYTES);
  const outAt = lib._malloc(CHUNK_BYTES);
  if (!keyAt || !nonceAt || !inAt || !outAt) return null;
  let keyIn: Uint8Array | null = null;
  return (sealed, nonce, key) => {
    if (sealed.length < TAG_BYTES || sealed.length > SEALED_CHUNK_BYTES || key.length !== 32 || nonce.length !== 12) {
      return null;
    }
    // HEAPU8 is replaced when the heap grows: read it afresh on every call.
    const heap = lib.HEAPU8;
    if (keyIn !== key) {
      heap.set(key, keyAt);
      keyIn = key;
    }
    heap.set(nonce, nonceAt);
    heap.set(sealed, inAt);
    const rc = lib._crypto_aead_chacha20poly1305_ietf_decrypt(outAt, 0, 0, inAt, sealed.length, 0, 0, 0, 0, nonceAt, keyAt);
    if (rc !== 0) return null;
    return lib.HEAPU8.subarray(outAt, outAt + sealed.length - TAG_BYTES);
  };
}

/** Which cipher implementation runs: "wasm" (libsodium) or "js" (noble). */
export type Engine = "wasm" | "js";

/**
 * libsodium's WASM AEAD, or the pure-JS one where WebAssembly may not run. With
 * `reusesOutput`, the caller promises to copy each plaintext before the next call, and
 * gets the heap-resident variant (no allocation per chunk) where it is available.
 */
export async function payloadAead(reusesOutput = false): Promise<{ aead: Aead; engine: Engine }> {
  try {
    await sodium.ready;
  } catch {
    return { aead: nobleAead, engine: "js" };
  }
  return { aead: (reusesOutput ? sodiumHeapAead() : null) ?? sodiumAead, engine: "wasm" };
}

/**
 * Writes chunk number `index` into bytes 0..10 of a STREAM nonce (big-endian) and the
 * last-chunk flag into byte 11. Chunk numbers here stay below 2^53; age allows 2^88,
 * which no file a browser downloads comes near.
 */
export function setChunkNonce(nonce: Uint8Array, index: number, last: boolean): void {
  let n = index;
  for (let i = 10; i >= 0; i--) {
    nonce[i] = n % 256;
    n = Math.floor(n / 256);
  }
  nonce[11] = last ? 1 : 0;
}
