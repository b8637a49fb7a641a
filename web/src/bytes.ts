// Byte streams that let a reader bring its own buffer (BYOB) all the way down to the
// network. Why: a fetch body read the default way hands out a fresh buffer per network
// chunk, and for a 1 GiB download the garbage piles up faster than the browser collects
// it (Chromium grew 160–430 MiB draining 1 GiB that way, against 0–21 MiB reading the
// same body into one reused buffer; docs/BENCHMARKS.md). So the layers between the
// download and the decryptor are byte streams that pass the reader's buffer through,
// the decryptor reads into a few batch buffers it recycles, and the save path reads the
// plaintext into one buffer it reuses.

/** Size of the buffer a default (non-BYOB) reader of a wrapped stream gets per read. */
const AUTO_CHUNK_BYTES = 256 * 1024;

export interface PassThroughHooks {
  /** Sees every chunk on its way through; throwing errors the stream. */
  onChunk?: (chunk: Uint8Array) => void;
  /** Called when the source ends; throwing errors the stream instead of closing it. */
  onEnd?: () => void;
  /** Replaces an error of the source (its own read failing) with another. */
  mapError?: (e: unknown) => Error;
}

/**
 * `source` as a byte stream, optionally watched by `hooks`. A BYOB reader of the result
 * reads straight into its own buffer: when `source` is a byte stream (a fetch body is),
 * the buffer is handed down to it, and nothing is copied or allocated per read.
 */
export function passThrough(source: ReadableStream<Uint8Array>, hooks: PassThroughHooks = {}): ReadableStream<Uint8Array> {
  const from = ChunkSource.of(source);
  return new ReadableStream(
    {
      type: "bytes",
      autoAllocateChunkSize: AUTO_CHUNK_BYTES,
      async pull(controller) {
        // autoAllocateChunkSize makes sure every pull has a request, default readers too.
        const request = controller.byobRequest!;
        // Read before the view's buffer is handed down (that detaches the view).
        const { byteOffset: offset, byteLength: length } = request.view!;
        const buffer = request.view!.buffer as ArrayBuffer;
        let filled: Uint8Array<ArrayBuffer> | null;
        try {
          filled = await from.readInto(new Uint8Array(buffer, offset, length));
        } catch (e) {
          throw hooks.mapError ? hooks.mapError(e) : e;
        }
        try {
          if (filled === null) {
            hooks.onEnd?.();
            controller.close();
            request.respondWithNewView(new Uint8Array(from.lastBuffer ?? buffer, offset, 0));
            return;
          }
          hooks.onChunk?.(filled);
        } catch (e) {
          await from.cancel(e);
          throw e;
        }
        request.respondWithNewView(filled);
      },
      cancel(reason) {
        return from.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Reads `stream` to its end through one reused buffer of `bufferBytes` and hands each
 * piece to `write`, which must be done with it when its promise settles. A stream that
 * is not a byte stream is read the default way.
 */
export async function drainInto(
  stream: ReadableStream<Uint8Array>,
  write: (chunk: Uint8Array) => Promise<void> | void,
  bufferBytes = 1 << 20,
): Promise<void> {
  const from = ChunkSource.of(stream);
  let buffer = new ArrayBuffer(bufferBytes);
  try {
    for (;;) {
      const filled = await from.readInto(new Uint8Array(buffer));
      if (filled === null) return;
      await write(filled);
      buffer = filled.buffer;
    }
  } catch (e) {
    await from.cancel(e);
    throw e;
  }
}

/**
 * Reads `stream` into buffers the caller supplies: BYOB when the stream is a byte
 * stream, else by copying its chunks.
 */
export class ChunkSource {
  private pending: Uint8Array = new Uint8Array(0);
  /** The buffer of the last read that ended the stream (BYOB gives it back then). */
  lastBuffer: ArrayBuffer | null = null;

  private constructor(
    private readonly byob: ReadableStreamBYOBReader | null,
    private readonly plain: ReadableStreamDefaultReader<Uint8Array> | null,
  ) {}

  static of(stream: ReadableStream<Uint8Array>): ChunkSource {
    let byob: ReadableStreamBYOBReader | null = null;
    try {
      byob = stream.getReader({ mode: "byob" });
    } catch {
      // Not a byte stream: read it the default way.
    }
    return byob ? new ChunkSource(byob, null) : new ChunkSource(null, stream.getReader());
  }

  /**
   * Reads at least one byte into `into` and returns the filled part — a view over the
   * same memory, whose buffer object replaces `into`'s (a BYOB read transfers it) — or
   * null at the end of the stream.
   */
  async readInto(into: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.byob) {
      const { done, value } = await this.byob.read(into);
      if (done) {
        this.lastBuffer = value ? value.buffer : null;
        return null;
      }
      return value;
    }
    while (this.pending.length === 0) {
      const { done, value } = await this.plain!.read();
      if (done) return null;
      this.pending = value;
    }
    const n = Math.min(into.length, this.pending.length);
    into.set(this.pending.subarray(0, n));
    this.pending = this.pending.subarray(n);
    return into.subarray(0, n);
  }

  /**
   * Fills `into` completely unless the stream ends first; returns the filled part (a
   * view from the start of `into`'s memory) and whether the stream ended.
   */
  async fill(into: Uint8Array<ArrayBuffer>): Promise<{ filled: Uint8Array<ArrayBuffer>; ended: boolean }> {
    // `into` is detached by the first BYOB read: keep what it described.
    let buffer = into.buffer;
    const { byteOffset: start, byteLength: want } = into;
    let length = 0;
    while (length < want) {
      const got = await this.readInto(new Uint8Array(buffer, start + length, want - length));
      if (got === null) {
        buffer = this.lastBuffer ?? buffer;
        return { filled: new Uint8Array(buffer, start, length), ended: true };
      }
      buffer = got.buffer;
      length += got.length;
    }
    return { filled: new Uint8Array(buffer, start, length), ended: false };
  }

  async cancel(reason?: unknown): Promise<void> {
    await (this.byob ?? this.plain)!.cancel(reason).catch(() => {});
  }
}
