// Service worker for browsers without a save picker: it performs the download and the
// decryption itself and answers a navigation to /d/_save/{job} with the plaintext as
// an attachment, so the browser's download manager writes it to disk as it streams.
// The key arrives by postMessage, never in a URL; a failure errors the stream, which
// makes the browser mark the download failed instead of keeping a truncated file.

/// <reference lib="webworker" />

import { openDownload } from "./pipeline";
import { ShareRefusedError } from "./share";
import type { Secret } from "./crypto/decrypt";
import { SECURITY_HEADERS, type JobRequest, type JobEvent, serializeError } from "./protocol";

declare const self: ServiceWorkerGlobalScope;

interface Job {
  downloadUrl: string;
  secret: Secret;
  fileName: string;
  expectedHeader?: Uint8Array;
  port: MessagePort;
}

// Jobs prepared by a page and not yet started; each is taken exactly once.
const pending = new Map<string, Job>();

self.addEventListener("install", () => {
  void self.skipWaiting();
});
self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("message", (event: ExtendableMessageEvent) => {
  const msg = event.data as JobRequest;
  if (msg?.type === "prepare" && event.ports[0]) {
    const port = event.ports[0];
    pending.set(msg.jobId, {
      downloadUrl: msg.downloadUrl,
      secret: msg.secret,
      fileName: msg.fileName,
      expectedHeader: msg.expectedHeader,
      port,
    });
    post(port, { type: "prepared" });
  }
  // "ping" needs no answer: receiving a message is what keeps this worker alive while
  // a long download streams.
});

self.addEventListener("fetch", (event: FetchEvent) => {
  const url = new URL(event.request.url);
  const m = /^\/d\/_save\/([A-Za-z0-9-]+)$/.exec(url.pathname);
  if (url.origin !== self.location.origin || !m) return;
  const job = pending.get(m[1]!);
  pending.delete(m[1]!);
  event.respondWith(job ? run(job) : plain(404, "This download has already started or expired."));
});

async function run(job: Job): Promise<Response> {
  let plaintext: ReadableStream<Uint8Array>;
  try {
    plaintext = await openDownload(
      job.downloadUrl,
      job.secret,
      (received) => post(job.port, { type: "progress", received }),
      job.expectedHeader,
    );
  } catch (e) {
    // Nothing was saved: the frame shows a short text, the page explains.
    post(job.port, { type: "failed", error: serializeError(e) });
    const status = e instanceof ShareRefusedError ? 409 : 422;
    return plain(status, "The download did not start; see the page for why.");
  }
  const reader = plaintext.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          post(job.port, { type: "done" });
        } else {
          controller.enqueue(value);
        }
      } catch (e) {
        post(job.port, { type: "failed", error: serializeError(e) });
        controller.error(e);
      }
    },
    cancel(reason) {
      post(job.port, { type: "failed", error: { name: "CancelledError", message: "cancelled" } });
      return reader.cancel(reason);
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      ...SECURITY_HEADERS,
      "Content-Type": "application/octet-stream",
      "Content-Disposition": contentDisposition(job.fileName),
      "Cache-Control": "no-store",
    },
  });
}

function plain(status: number, text: string): Response {
  return new Response(text, {
    status,
    headers: { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8" },
  });
}

function post(port: MessagePort, ev: JobEvent): void {
  port.postMessage(ev);
}

// RFC 6266: an ASCII fallback plus the exact UTF-8 name.
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_") || "download";
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
