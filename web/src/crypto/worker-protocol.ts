// Messages between the page (parallel.ts) and a decryption worker (worker.ts).

import type { Engine } from "./aead";

/** Page → worker. */
export type ToWorker =
  /** The payload key, once, before any batch. */
  | { type: "key"; key: Uint8Array }
  /**
   * Sealed chunks `firstChunk`, `firstChunk + 1`, … in the first `length` bytes of
   * `buffer` (one of the page's recycled batch buffers, transferred, not copied; bytes
   * past `length` are not part of the batch). Only the file's final batch may end in a
   * partial chunk.
   */
  | { type: "batch"; id: number; buffer: ArrayBuffer; length: number; firstChunk: number };

/** Worker → page. */
export type FromWorker =
  /** The cipher is loaded; `engine` says which one. */
  | { type: "ready"; engine: Engine }
  /**
   * A batch opened (or stopped at a bad chunk): the first `plainBytes` bytes of
   * `buffer` (the same one, handed back) are the plaintext.
   */
  | {
      type: "opened";
      id: number;
      buffer: ArrayBuffer;
      plainBytes: number;
      endsFile: boolean;
      error: string | null;
    }
  /** The worker cannot go on (no key, an exception): the download must fail. */
  | { type: "fatal"; message: string };
