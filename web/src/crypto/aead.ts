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

/** Opens one sealed chunk, or returns null when it does not authenticate. */
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

/** Which cipher implementation runs: "wasm" (libsodium) or "js" (noble). */
export type Engine = "wasm" | "js";

/** libsodium's WASM AEAD, or the pure-JS one where WebAssembly may not run. */
export async function payloadAead(): Promise<{ aead: Aead; engine: Engine }> {
  try {
    await sodium.ready;
    return { aead: sodiumAead, engine: "wasm" };
  } catch {
    return { aead: nobleAead, engine: "js" };
  }
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
