// download → count → decrypt, shared by the page (save picker, in-memory) and the
// service worker. No DOM access. The payload opens in parallel Web Workers
// (crypto/parallel.ts) where the context has them — the page — and on one thread where
// it has none — the service worker.

import type { Secret } from "./crypto/decrypt";
import { decryptAge } from "./crypto/parallel";
import { fetchCiphertext } from "./share";

/** Ciphertext bytes received so far, reported as they arrive. */
export type OnProgress = (receivedBytes: number) => void;

/**
 * Starts the counted download and returns the plaintext stream once the header has
 * been opened with `secret` (wrong key or passphrase reject before any byte is saved).
 */
export async function openDownload(
  downloadUrl: string,
  secret: Secret,
  onProgress: OnProgress,
): Promise<ReadableStream<Uint8Array>> {
  const { body } = await fetchCiphertext(downloadUrl);
  let received = 0;
  const counted = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        received += chunk.byteLength;
        onProgress(received);
        c.enqueue(chunk);
      },
    }),
  );
  return decryptAge(counted, secret);
}
