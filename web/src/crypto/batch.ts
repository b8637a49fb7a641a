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
// A batch is the network's own buffers, as they came, read as one run of bytes
// (Segments): the plaintext is written back over them, so the buffers that carried the
// ciphertext carry the plaintext out, and no buffer is allocated per batch.

import { type Aead, SEALED_CHUNK_BYTES, setChunkNonce, TAG_BYTES } from "./aead";

export interface BatchOutcome {
  /** Bytes of plaintext now at the start of the batch: every chunk that opened, in order. */
  plainBytes: number;
  /** The batch's final chunk opened as the file's last chunk. */
  endsFile: boolean;
  /** Why opening stopped (the chunks before it are in plainBytes), or null. */
  error: string | null;
}

/** Consecutive buffers read and written as one run of bytes. */
export class Segments {
  readonly length: number;
  private readonly starts: number[] = [];
  private at = 0;

  constructor(readonly parts: Uint8Array[]) {
    let n = 0;
    for (const p of parts) {
      this.starts.push(n);
      n += p.length;
    }
    this.length = n;
  }

  /** The part holding byte `offset` (accesses run forwards: search from the last one). */
  private partAt(offset: number): number {
    if (offset < this.starts[this.at]!) this.at = 0;
    while (this.at + 1 < this.parts.length && this.starts[this.at + 1]! <= offset) this.at++;
    return this.at;
  }

  /** Bytes [offset, offset + n): a view where they lie in one part, else a copy in `scratch`. */
  read(offset: number, n: number, scratch: Uint8Array): Uint8Array {
    let i = this.partAt(offset);
    const local = offset - this.starts[i]!;
    if (local + n <= this.parts[i]!.length) return this.parts[i]!.subarray(local, local + n);
    let copied = 0;
    let from = local;
    while (copied < n) {
      const part = this.parts[i++]!;
      const take = Math.min(part.length - from, n - copied);
      scratch.set(part.subarray(from, from + take), copied);
      copied += take;
      from = 0;
    }
    return scratch.subarray(0, n);
  }

  /** Writes `bytes` at `offset`, across parts as needed. */
  write(offset: number, bytes: Uint8Array): void {
    let i = this.partAt(offset);
    let local = offset - this.starts[i]!;
    let done = 0;
    while (done < bytes.length) {
      const part = this.parts[i++]!;
      const take = Math.min(part.length - local, bytes.length - done);
      part.set(bytes.subarray(done, done + take), local);
      done += take;
      local = 0;
    }
  }
}

/**
 * Opens the chunks in `data`, the first of which is chunk number `firstChunk` of the file,
 * writing each plaintext over the ciphertext already read (plaintext chunk i lands at
 * i × 64 KiB, before sealed chunk i + 1 starts). A length that is not a whole number of
 * sealed chunks means the file ends inside this batch: the remainder is its last chunk.
 */
export function openBatch(aead: Aead, key: Uint8Array, data: Segments, firstChunk: number): BatchOutcome {
  const nonce = new Uint8Array(12);
  const scratch = new Uint8Array(SEALED_CHUNK_BYTES);
  const fullChunks = Math.floor(data.length / SEALED_CHUNK_BYTES);
  const tail = data.length - fullChunks * SEALED_CHUNK_BYTES;
  let plainBytes = 0;
  let lastAt = -1;
  const failed = (error: string): BatchOutcome => ({ plainBytes, endsFile: false, error });

  for (let i = 0; i < fullChunks; i++) {
    const n = firstChunk + i;
    if (lastAt >= 0) return failed("The file has extra data after its last chunk.");
    const sealed = data.read(i * SEALED_CHUNK_BYTES, SEALED_CHUNK_BYTES, scratch);
    setChunkNonce(nonce, n, false);
    let plain = aead(sealed, nonce, key);
    if (plain === null) {
      setChunkNonce(nonce, n, true);
      plain = aead(sealed, nonce, key);
      if (plain === null) return failed(`The file is damaged (chunk ${n + 1} does not authenticate).`);
      lastAt = i;
    }
    data.write(plainBytes, plain);
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
    const plain = aead(data.read(fullChunks * SEALED_CHUNK_BYTES, tail, scratch), nonce, key);
    if (plain === null) {
      return failed(`The file is damaged or cut short (chunk ${n + 1} does not authenticate as the last one).`);
    }
    data.write(plainBytes, plain);
    plainBytes += plain.length;
    return { plainBytes, endsFile: true, error: null };
  }
  // Reaching here with lastAt set means it was the batch's final chunk.
  return { plainBytes, endsFile: lastAt >= 0, error: null };
}
