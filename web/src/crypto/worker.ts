// A dedicated worker that opens batches of STREAM chunks for the page (parallel.ts):
// the page keeps the header, the order of batches and every end-of-file rule; a worker
// only runs the cipher on what it is given, with the chunk numbers it is given. Bundled
// by build.mjs as its own classic script (/web/decrypt-worker.js), served from the
// page's origin with the page's CSP (no blob: URL, no inline code).

/// <reference lib="webworker" />

import { type Aead, payloadAead } from "./aead";
import { openBatch } from "./batch";
import type { FromWorker, ToWorker } from "./worker-protocol";

declare const self: DedicatedWorkerGlobalScope;

let key: Uint8Array | null = null;
// openBatch copies every plaintext into the batch buffer at once, so the cipher may hand
// back a view of its own output buffer (no allocation per chunk).
const cipher: Promise<Aead> = payloadAead(true).then(({ aead, engine }) => {
  post({ type: "ready", engine });
  return aead;
});

// Messages are handled one after another, in the order they came, once the cipher is
// loaded (a batch may arrive while libsodium still compiles).
let queue: Promise<void> = Promise.resolve();
self.addEventListener("message", (event: MessageEvent<ToWorker>) => {
  const msg = event.data;
  queue = queue.then(() => handle(msg)).catch((e: unknown) => {
    post({ type: "fatal", message: e instanceof Error ? e.message : String(e) });
  });
});

async function handle(msg: ToWorker): Promise<void> {
  const aead = await cipher;
  if (msg.type === "key") {
    key = msg.key;
    return;
  }
  if (key === null) throw new Error("a batch arrived before the payload key");
  const outcome = openBatch(aead, key, new Uint8Array(msg.buffer, 0, msg.length), msg.firstChunk);
  post({ type: "opened", id: msg.id, buffer: msg.buffer, ...outcome }, [msg.buffer]);
}

function post(msg: FromWorker, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer);
}
