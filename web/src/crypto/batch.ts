// Opening a run of consecutive STREAM chunks in one go: the unit of work the page hands
// to a decryption worker (parallel.ts → worker.ts). Pure: no DOM, no worker API, so the
// same rules can be read next to StreamOpener in stream-wasm.ts.
//
// The rules are age's, exactly as the single-thread path applies them:
//  - a full sealed chunk (64 KiB + 16) is tried as a middle chunk, and if that fails, as
//    the last one; once a chunk has opened as the last, any further byte is an error;
//  - a shorter piece can only be the last chunk, so it may only end the file; under 16
//    bytes it is a cut-off tag; exactly 16 (an empty chunk) only for an empty file.
// What this function cannot see — whether more bytes follow a batch whose final chunk
// opened as the last, or whether a file ends without a last chunk — the caller checks
// with `endsFile`.
//
// A batch is one buffer: the plaintext is written back over the ciphertext already
// read, so the buffer that carried the ciphertext carries the plaintext out.

import { type Aead, SEALED_CHUNK_BYTES, setChunkNonce, TAG_BYTES } from "./aead";

export interface BatchOutcome {
  /** Bytes of plaintext now at the start of the batch: every chunk that opened, in order. */
  plainBytes: number;
  /** The batch's final chunk opened as the file's last chunk. */
  endsFile: boolean;
  /** Why opening stopped (the chunks before it are in plainBytes), or null. */
  error: string | null;
}

/**
 * Opens the chunks in `data`, the first of which is chunk number `firstChunk` of the file,
 * writing each plaintext over the ciphertext already read (plaintext chunk i lands at
 * i × 64 KiB, before sealed chunk i + 1 starts). A length that is not a whole number of
 * sealed chunks means the file ends inside this batch: the remainder is its last chunk.
 */
export function openBatch(aead: Aead, key: Uint8Array, data: Uint8Array, firstChunk: number): BatchOutcome {
  const nonce = new Uint8Array(12);
  const fullChunks = Math.floor(data.length / SEALED_CHUNK_BYTES);
  const tail = data.length - fullChunks * SEALED_CHUNK_BYTES;
  let plainBytes = 0;
  let lastAt = -1;
  const failed = (error: string): BatchOutcome => ({ plainBytes, endsFile: false, error });

  for (let i = 0; i < fullChunks; i++) {
    const n = firstChunk + i;
    if (lastAt >= 0) return failed("The file has extra data after its last chunk.");
    const sealed = data.subarray(i * SEALED_CHUNK_BYTES, (i + 1) * SEALED_CHUNK_BYTES);
    setChunkNonce(nonce, n, false);
    let plain = aead(sealed, nonce, key);
    if (plain === null) {
      setChunkNonce(nonce, n, true);
      plain = aead(sealed, nonce, key);
      if (plain === null) return failed(`The file is damaged (chunk ${n + 1} does not authenticate).`);
      lastAt = i;
    }
    data.set(plain, plainBytes);
    plainBytes += plain.length;
  }

  if (tail > 0) {
    const n = firstChunk + fullChunks;
    if (lastAt >= 0) return failed("The file has extra data after its last chunk.");
    if (tail < TAG_BYTES) {
      return failed("The file is cut short (its last chunk is missing or incomplete).");
    }
    // Only a file whose whole plaintext is empty may end in an empty chunk.
    if (tail === TAG_BYTES && n > 0) return failed("The file is damaged (it ends in an empty chunk).");
    setChunkNonce(nonce, n, true);
    const plain = aead(data.subarray(fullChunks * SEALED_CHUNK_BYTES), nonce, key);
    if (plain === null) {
      return failed(`The file is damaged or cut short (chunk ${n + 1} does not authenticate as the last one).`);
    }
    data.set(plain, plainBytes);
    plainBytes += plain.length;
    return { plainBytes, endsFile: true, error: null };
  }
  // Reaching here with lastAt set means it was the batch's final chunk.
  return { plainBytes, endsFile: lastAt >= 0, error: null };
}
