// Decrypting an age file with its payload chunks opened in parallel Web Workers.
//
// Why: one thread of libsodium's WASM ChaCha20-Poly1305 opens 200–260 MB/s in Chromium
// on the reference machine, about half of what the same browser downloads over
// loopback, and the stream around it costs more (docs/BENCHMARKS.md, "Web decryption").
// STREAM chunks are independent once their number is known, so the payload is cut into
// batches of whole sealed chunks that a few dedicated workers open side by side.
//
// Division of work:
//  - this thread reads and verifies the header (stream-wasm.ts's openHeader: age-encryption
//    unwraps the file key, HKDF gives the payload key), then cuts the payload into
//    batches, numbers their chunks, hands each batch's buffer to the least busy worker
//    (transferred, not copied), and releases the plaintext strictly in order;
//  - a worker (worker.ts) opens the chunks of a batch with the numbers it is given
//    (batch.ts: middle chunk, else last chunk) and hands the buffer back with the
//    plaintext in it;
//  - the end-of-file rules that span batches stay here: after a batch whose final chunk
//    opened as the last one, any further batch is an error; a file whose final batch
//    does not end in a last chunk is cut short.
// At most `2 × workers` batches (each ≈ 1 MiB) are out at once, and a batch only
// leaves that window when the consumer takes its plaintext, so memory stays bounded by a
// few MiB whatever the file size and however slow the disk. A batch is one of a few
// recycled buffers, filled straight from the download (BYOB, bytes.ts), transferred to
// the worker and back (not copied) with the plaintext in it, which the reader then
// copies into its own buffer: nothing is allocated per batch.
//
// Where workers cannot run, the same file opens on this thread (stream-wasm.ts): when
// `Worker` does not exist (Chromium's service workers have none, so the service-worker
// save path always takes it), or when the workers do not start (script refused, CSP,
// no answer in time), which is found before any payload byte is read. A worker failing
// once decryption runs errors the stream: no file completes.

import { ChunkSource } from "../bytes";
import { type Engine, SEALED_CHUNK_BYTES } from "./aead";
import { DamagedFileError, type Secret } from "./decrypt";
import { openHeader, openPayload, type OpenedHeader } from "./stream-wasm";
import type { FromWorker, ToWorker } from "./worker-protocol";

/** Where build.mjs puts the worker and hashdrop-server serves it (same origin as the page). */
export const DEFAULT_WORKER_URL = "/web/decrypt-worker.js";
/** Sealed chunks per batch: 16 × (64 KiB + 16 B) ≈ 1 MiB per message to a worker. */
const DEFAULT_BATCH_CHUNKS = 16;
/** How long workers may take to load libsodium before this thread does the work itself. */
const WORKER_START_MS = 15_000;

/** Which path decrypted the payload, and why (for tests and benchmarks). */
export type PayloadPath =
  | { path: "parallel"; workers: number; engine: Engine }
  | { path: "single"; reason: string };

export interface ParallelOptions {
  /** URL of the worker script (default DEFAULT_WORKER_URL). */
  workerUrl?: string;
  /** Number of workers (default: the browser's hardwareConcurrency, within 2..4). */
  workers?: number;
  /** Sealed chunks per batch (default 16). */
  batchChunks?: number;
  /** Told once which path runs, before the first plaintext. */
  onPath?: (path: PayloadPath) => void;
}

/** Workers for this browser: one per core it reports, at least 2, at most 4. */
export function defaultWorkerCount(): number {
  const cores = typeof navigator === "object" ? navigator.hardwareConcurrency : 0;
  return Math.min(4, Math.max(2, Number.isFinite(cores) ? cores : 2));
}

/**
 * Same contract as stream-wasm.ts's decryptAge: resolves once the header is verified
 * (wrong key or passphrase reject before any plaintext); the stream then yields the
 * plaintext in order and errors with DamagedFileError if a chunk does not authenticate
 * or the file is cut or extended, after releasing only chunks that authenticated.
 * Errors of the ciphertext stream itself (network) pass through unchanged.
 */
export async function decryptAge(
  ciphertext: ReadableStream<Uint8Array>,
  secret: Secret,
  options: ParallelOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const report = options.onPath ?? (() => {});
  if (typeof Worker !== "function") {
    report({ path: "single", reason: "Worker is not available in this context" });
    return openPayload(await openHeader(ciphertext, secret));
  }
  // The workers load libsodium while this thread reads the header (and runs scrypt).
  const count = Math.max(1, Math.floor(options.workers ?? defaultWorkerCount()));
  const pool = new WorkerPool(options.workerUrl ?? DEFAULT_WORKER_URL, count);
  let header: OpenedHeader;
  try {
    header = await openHeader(ciphertext, secret);
  } catch (e) {
    pool.terminate();
    throw e;
  }
  let engine: Engine;
  try {
    engine = await pool.started(WORKER_START_MS);
  } catch (e) {
    pool.terminate();
    report({ path: "single", reason: `the decryption workers did not start (${e instanceof Error ? e.message : e})` });
    return openPayload(header);
  }
  report({ path: "parallel", workers: pool.size, engine });
  pool.setKey(header.payloadKey);
  const batchChunks = Math.max(1, Math.floor(options.batchChunks ?? DEFAULT_BATCH_CHUNKS));
  return new ParallelPayload(header, pool, batchChunks * SEALED_CHUNK_BYTES, 2 * pool.size).stream;
}

type Opened = Extract<FromWorker, { type: "opened" }>;

/** A few dedicated workers; each batch goes to the one with the least work queued. */
class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly queued: number[] = [];
  private readonly ready: Promise<Engine>;
  private failedWith: Error | null = null;
  private isStarted = false;
  /** Called with every opened batch. */
  onOpened: (msg: Opened) => void = () => {};
  /** Called once if any worker fails after the pool started. */
  onFailure: (e: Error) => void = () => {};

  constructor(url: string, count: number) {
    this.ready = new Promise<Engine>((resolve, reject) => {
      let readyCount = 0;
      let engine: Engine = "wasm";
      const fail = (e: Error) => {
        if (this.failedWith) return;
        this.failedWith = e;
        if (this.isStarted) this.onFailure(e);
        else reject(e);
      };
      try {
        for (let i = 0; i < count; i++) {
          const w = new Worker(url, { name: `hashdrop-decrypt-${i + 1}` });
          const index = i;
          w.addEventListener("message", (m: MessageEvent<FromWorker>) => {
            const msg = m.data;
            if (msg.type === "ready") {
              if (msg.engine === "js") engine = "js";
              if (++readyCount === count) resolve(engine);
            } else if (msg.type === "opened") {
              this.queued[index]!--;
              this.onOpened(msg);
            } else {
              fail(new Error(`a decryption worker failed: ${msg.message}`));
            }
          });
          w.addEventListener("error", (ev: ErrorEvent) => {
            ev.preventDefault();
            fail(new Error(`a decryption worker failed${ev.message ? `: ${ev.message}` : " to load"}`));
          });
          w.addEventListener("messageerror", () => fail(new Error("a decryption worker sent an unreadable message")));
          this.workers.push(w);
          this.queued.push(0);
        }
      } catch (e) {
        fail(e instanceof Error ? e : new Error(String(e)));
      }
    });
    // Rejections are read by started(); a pool torn down before that is not an error.
    this.ready.catch(() => {});
  }

  get size(): number {
    return this.workers.length;
  }

  /** Resolves with the engine once every worker has loaded its cipher. */
  async started(timeoutMs: number): Promise<Engine> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      const engine = await Promise.race([this.ready, timeout]);
      // A worker may have failed after all of them reported ready and before this
      // point; from here on, failures go to onFailure.
      if (this.failedWith) throw this.failedWith;
      this.isStarted = true;
      return engine;
    } finally {
      clearTimeout(timer);
    }
  }

  setKey(key: Uint8Array): void {
    for (const w of this.workers) this.post(w, { type: "key", key });
  }

  dispatch(id: number, buffer: ArrayBuffer, length: number, firstChunk: number): void {
    let best = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.queued[i]! < this.queued[best]!) best = i;
    this.queued[best]!++;
    this.post(this.workers[best]!, { type: "batch", id, buffer, length, firstChunk }, [buffer]);
  }

  terminate(): void {
    for (const w of this.workers) w.terminate();
    this.onOpened = () => {};
    this.onFailure = () => {};
  }

  private post(w: Worker, msg: ToWorker, transfer: Transferable[] = []): void {
    w.postMessage(msg, transfer);
  }
}

/** What the next batch in file order turned out to be. */
type Outcome =
  | { kind: "opened"; buffer: ArrayBuffer; plainBytes: number; endsFile: boolean; error: string | null }
  | { kind: "end" }
  | { kind: "failed"; error: unknown };

class Slot {
  readonly promise: Promise<Outcome>;
  settle: (o: Outcome) => void = () => {};
  constructor() {
    this.promise = new Promise((resolve) => {
      this.settle = resolve;
    });
  }
}

/**
 * The payload as a byte stream: a pump reads ciphertext into batches and dispatches them
 * while fewer than `window` batches are out; each pull releases plaintext of the next
 * batch in file order, into the reader's own buffer when it brings one (BYOB).
 */
class ParallelPayload {
  readonly stream: ReadableStream<Uint8Array>;
  private readonly source: ChunkSource;
  private carry: Uint8Array;
  private readonly batches: BatchBuffers;
  private readonly slots = new Map<number, Slot>();
  /** Plaintext of the batch being handed out, and where the next byte is. */
  private current: { buffer: ArrayBuffer; offset: number; end: number } | null = null;
  private dispatched = 0;
  private released = 0;
  private nextChunk = 0;
  private endedFile = false;
  private deferredError: Error | null = null;
  private stopped = false;
  private pumping = false;
  private wakePump: (() => void) | null = null;

  constructor(
    header: OpenedHeader,
    private readonly pool: WorkerPool,
    private readonly batchBytes: number,
    private readonly window: number,
  ) {
    // The header was read the default way; the payload is read into batch buffers.
    header.source.releaseLock();
    this.source = ChunkSource.of(header.stream);
    this.carry = header.readAhead;
    this.batches = new BatchBuffers(batchBytes, window + 1);
    pool.onOpened = (m) => this.slot(m.id).settle({ kind: "opened", ...m });
    // A worker that fails fails the whole file: every batch still out (and the next one
    // to be released, whichever it is) resolves as failed.
    pool.onFailure = (error) => {
      for (let id = this.released; id <= this.dispatched; id++) this.slot(id).settle({ kind: "failed", error });
      this.stop();
    };
    this.stream = new ReadableStream(
      {
        type: "bytes",
        // A default reader gets a fresh buffer of one batch's plaintext per read.
        autoAllocateChunkSize: batchBytes,
        pull: (controller) => this.pull(controller),
        cancel: async (reason) => {
          this.stop();
          await this.source.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  }

  private slot(id: number): Slot {
    let s = this.slots.get(id);
    if (!s) {
      s = new Slot();
      this.slots.set(id, s);
    }
    return s;
  }

  private async pull(controller: ReadableByteStreamController): Promise<void> {
    if (!this.pumping) {
      this.pumping = true;
      void this.pump();
    }
    try {
      for (;;) {
        if (this.current) {
          this.handOut(controller, this.current);
          return;
        }
        // A damaged chunk stops a batch: its good chunks went out before, the error
        // goes out now.
        if (this.deferredError) throw this.deferredError;
        const id = this.released;
        const outcome = await this.slot(id).promise;
        this.slots.delete(id);
        if (outcome.kind === "failed") throw outcome.error;
        if (outcome.kind === "end") {
          if (!this.endedFile) {
            throw new DamagedFileError("The file is cut short (its last chunk is missing or incomplete).");
          }
          this.stop();
          controller.close();
          controller.byobRequest?.respond(0);
          return;
        }
        if (this.endedFile) throw new DamagedFileError("The file has extra data after its last chunk.");
        this.released++;
        this.wakePump?.();
        this.endedFile = outcome.endsFile;
        if (outcome.error !== null) this.deferredError = new DamagedFileError(outcome.error);
        // The plaintext starts at the batch buffer's beginning (each chunk is 16 bytes
        // shorter open). An empty batch (an empty file's only chunk) has none.
        if (outcome.plainBytes > 0) this.current = { buffer: outcome.buffer, offset: 0, end: outcome.plainBytes };
        else this.batches.give(outcome.buffer);
      }
    } catch (e) {
      this.stop();
      await this.source.cancel(e);
      throw e;
    }
  }

  /** Copies plaintext into the reader's buffer; a batch used up goes back to the pool. */
  private handOut(controller: ReadableByteStreamController, at: { buffer: ArrayBuffer; offset: number; end: number }): void {
    const request = controller.byobRequest!;
    const view = request.view!;
    const n = Math.min(view.byteLength, at.end - at.offset);
    new Uint8Array(view.buffer, view.byteOffset, n).set(new Uint8Array(at.buffer, at.offset, n));
    at.offset += n;
    if (at.offset === at.end) {
      this.batches.give(at.buffer);
      this.current = null;
    }
    request.respond(n);
  }

  /** Reads the payload into batches and dispatches them, `window` at most out at once. */
  private async pump(): Promise<void> {
    try {
      for (;;) {
        while (!this.stopped && this.dispatched - this.released >= this.window) {
          await new Promise<void>((resolve) => {
            this.wakePump = resolve;
          });
          this.wakePump = null;
        }
        if (this.stopped) return;
        const { buffer, length, ended } = await this.fill();
        if (this.stopped) return;
        if (length > 0) {
          this.pool.dispatch(this.dispatched++, buffer, length, this.nextChunk);
          this.nextChunk += Math.ceil(length / SEALED_CHUNK_BYTES);
        } else {
          this.batches.give(buffer);
        }
        if (ended) {
          this.slot(this.dispatched).settle({ kind: "end" });
          return;
        }
      }
    } catch (error) {
      // The download itself failed: the batches before go out first, then this error,
      // as it is (a broken connection is not called tampering).
      this.slot(this.dispatched).settle({ kind: "failed", error });
    }
  }

  /**
   * One batch of ciphertext in a recycled buffer: `batchBytes` (whole sealed chunks), or
   * what is left when the payload ends. The bytes read past the header go first.
   */
  private async fill(): Promise<{ buffer: ArrayBuffer; length: number; ended: boolean }> {
    const buffer = this.batches.take();
    const head = Math.min(this.carry.length, this.batchBytes);
    new Uint8Array(buffer).set(this.carry.subarray(0, head));
    this.carry = this.carry.subarray(head);
    if (head === this.batchBytes) return { buffer, length: head, ended: false };
    const { filled, ended } = await this.source.fill(new Uint8Array(buffer, head));
    return { buffer: filled.buffer, length: head + filled.length, ended };
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.wakePump?.();
    this.pool.terminate();
  }
}

/**
 * Batch buffers, recycled: a batch's buffer goes to a worker and back and carries the
 * plaintext until the reader has copied it out, then ciphertext again. At most `keep`
 * are kept; one more is allocated only when all of them are out.
 */
class BatchBuffers {
  private readonly free: ArrayBuffer[] = [];

  constructor(
    private readonly bytes: number,
    private readonly keep: number,
  ) {}

  take(): ArrayBuffer {
    return this.free.pop() ?? new ArrayBuffer(this.bytes);
  }

  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.bytes && this.free.length < this.keep) this.free.push(buffer);
  }
}
