// The three ways the page writes a download to disk, best first:
//   1. the File System Access save picker (Chromium desktop): straight into the file;
//   2. a same-origin service worker that streams into the browser's download manager;
//   3. an in-memory Blob, only up to IN_MEMORY_CAP bytes.
// Each one leaves no completed file behind when the download or decryption fails.

import { drainInto } from "./bytes";
import type { Secret } from "./crypto/decrypt";
import { openDownload, type OnProgress } from "./pipeline";
import { ShareRefusedError } from "./share";
import type { JobEvent, JobRequest, SerializedError } from "./protocol";
import { DamagedFileError, WrongKeyError, WrongPassphraseError } from "./crypto/decrypt";
import { NetworkError } from "./share";

/** Largest file the in-memory fallback will hold (ciphertext bytes). */
export const IN_MEMORY_CAP = 256 * 1024 * 1024;

export type SaveMethod = "picker" | "service-worker" | "memory";

interface SaveFilePickerWindow {
  showSaveFilePicker?: (opts: { suggestedName?: string }) => Promise<FileSystemFileHandle>;
}

/** The user closed the save dialog: not an error, back to the ready screen. */
export class SaveCancelledError extends Error {
  override name = "SaveCancelledError";
}

export function bestSaveMethod(): SaveMethod {
  if (typeof (window as SaveFilePickerWindow).showSaveFilePicker === "function") return "picker";
  if ("serviceWorker" in navigator && window.isSecureContext) return "service-worker";
  return "memory";
}

export interface SaveRequest {
  downloadUrl: string;
  secret: Secret;
  fileName: string;
  /** The header the sealed name was opened with; the download must start with it. */
  expectedHeader?: Uint8Array;
  onProgress: OnProgress;
}

/** Must be called from the click handler: the picker needs the user's gesture. */
export async function saveWithPicker(req: SaveRequest): Promise<void> {
  const picker = (window as SaveFilePickerWindow).showSaveFilePicker!;
  let handle: FileSystemFileHandle;
  try {
    handle = await picker({ suggestedName: req.fileName });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw new SaveCancelledError();
    throw e;
  }
  // Writes go to a swap file that replaces the target only on close(); on failure the
  // swap file is discarded and the (empty) file the picker created is removed.
  const writable = await handle.createWritable();
  try {
    const plaintext = await openDownload(req.downloadUrl, req.secret, req.onProgress, req.expectedHeader);
    // Through one reused buffer rather than pipeTo, which would take a fresh buffer per
    // read: on a multi-GB file that garbage is what the browser's memory grows by.
    await drainInto(plaintext, (chunk) => writable.write(chunk as Uint8Array<ArrayBuffer>));
    await writable.close();
  } catch (e) {
    await writable.abort().catch(() => undefined);
    const removable = handle as FileSystemFileHandle & { remove?: () => Promise<void> };
    await removable.remove?.().catch(() => undefined);
    throw e;
  }
}

let registration: Promise<ServiceWorkerRegistration> | null = null;

function worker(): Promise<ServiceWorkerRegistration> {
  registration ??= navigator.serviceWorker
    .register("/d/sw.js", { scope: "/d/" })
    .then(() => navigator.serviceWorker.ready);
  return registration;
}

/** Registers the worker early so the first click does not wait for it. */
export function prepareServiceWorker(): void {
  void worker().catch(() => undefined);
}

export async function saveWithServiceWorker(req: SaveRequest): Promise<void> {
  const reg = await worker();
  const active = reg.active;
  if (!active) throw new Error("the download helper (service worker) is not active");
  const jobId = crypto.randomUUID();
  const channel = new MessageChannel();
  const events = channel.port1;

  const outcome = new Promise<void>((resolve, reject) => {
    events.onmessage = (m: MessageEvent<JobEvent>) => {
      const ev = m.data;
      if (ev.type === "progress") req.onProgress(ev.received);
      else if (ev.type === "done") resolve();
      else if (ev.type === "failed") reject(revive(ev.error));
    };
  });
  const prepared = new Promise<void>((resolve) => {
    const first = (m: MessageEvent<JobEvent>) => {
      if (m.data.type === "prepared") {
        events.removeEventListener("message", first);
        resolve();
      }
    };
    events.addEventListener("message", first);
  });
  events.start();
  const prepare: JobRequest = {
    type: "prepare",
    jobId,
    downloadUrl: req.downloadUrl,
    secret: req.secret,
    fileName: req.fileName,
    expectedHeader: req.expectedHeader,
  };
  active.postMessage(prepare, [channel.port2]);
  await prepared;

  // A hidden frame navigates to the worker's download URL; the job id in it is random
  // and single-use, the key never appears in it.
  const frame = document.createElement("iframe");
  frame.hidden = true;
  frame.src = `/d/_save/${jobId}`;
  document.body.append(frame);
  // Messages keep the worker alive while the browser streams a long download.
  const ping: JobRequest = { type: "ping" };
  const keepAlive = setInterval(() => active.postMessage(ping), 10_000);
  try {
    await outcome;
  } finally {
    clearInterval(keepAlive);
    // Leave the frame long enough for the download manager to take the response over.
    setTimeout(() => frame.remove(), 60_000);
    events.close();
  }
}

export async function saveInMemory(req: SaveRequest): Promise<void> {
  const plaintext = await openDownload(req.downloadUrl, req.secret, req.onProgress, req.expectedHeader);
  const parts: Uint8Array<ArrayBuffer>[] = [];
  const reader = plaintext.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value as Uint8Array<ArrayBuffer>);
  }
  // Only a fully decrypted and authenticated file becomes a Blob the user can save.
  const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = req.fileName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function revive(e: SerializedError): Error {
  switch (e.name) {
    case "ShareRefusedError":
      return new ShareRefusedError(e.refusal ?? { kind: "server_error", status: 0 });
    case "WrongKeyError":
      return new WrongKeyError(e.message);
    case "WrongPassphraseError":
      return new WrongPassphraseError(e.message);
    case "DamagedFileError":
      return new DamagedFileError(e.message);
    case "NetworkError":
      return new NetworkError(e.message);
    default:
      return new Error(e.message);
  }
}
