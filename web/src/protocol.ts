// Messages between the page and its service worker, and the headers both put on what
// they serve. No DOM access.

import type { Secret } from "./crypto/decrypt";
import { ShareRefusedError, type ShareRefusal } from "./share";

/** Page → worker. */
export type JobRequest =
  | {
      type: "prepare";
      jobId: string;
      downloadUrl: string;
      secret: Secret;
      fileName: string;
      expectedHeader?: Uint8Array;
    }
  | { type: "ping" };

/** An error that crossed postMessage: its class name, message and, for refusals, why. */
export interface SerializedError {
  name: string;
  message: string;
  refusal?: ShareRefusal;
}

/** Worker → page, on the job's own MessagePort. */
export type JobEvent =
  | { type: "prepared" }
  | { type: "progress"; received: number }
  | { type: "done" }
  | { type: "failed"; error: SerializedError };

export function serializeError(e: unknown): SerializedError {
  if (e instanceof ShareRefusedError) return { name: e.name, message: e.message, refusal: e.refusal };
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/** The same policy the server sets on the page: nothing but this origin, no referrer. */
export const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-src 'self'; worker-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'",
  "Referrer-Policy": "no-referrer",
  "X-Content-Type-Options": "nosniff",
};
