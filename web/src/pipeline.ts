// download → count → decrypt, shared by the page (save picker, in-memory) and the
// service worker. No DOM access. The payload opens in parallel Web Workers
// (crypto/parallel.ts) where the context has them — the page — and on one thread where
// it has none — the service worker.

import { passThrough } from "./bytes";
import { DamagedFileError, type Secret } from "./crypto/decrypt";
import { decryptAge } from "./crypto/parallel";
import { fetchCiphertext } from "./share";

/** Ciphertext bytes received so far, reported as they arrive. */
export type OnProgress = (receivedBytes: number) => void;

/**
 * Starts the counted download and returns the plaintext stream once the header has
 * been opened with `secret` (wrong key or passphrase reject before any byte is saved).
 * `expectedHeader`, the header a sealed name was opened with, must be exactly how the
 * download starts: otherwise the server is showing this file under another file's
 * name, and the download fails before any plaintext exists.
 */
export async function openDownload(
  downloadUrl: string,
  secret: Secret,
  onProgress: OnProgress,
  expectedHeader?: Uint8Array,
): Promise<ReadableStream<Uint8Array>> {
  const { body } = await fetchCiphertext(downloadUrl);
  let received = 0;
  // A byte stream like the body, so the decryptor's buffers reach the network (bytes.ts).
  const counted = passThrough(body, {
    onChunk(chunk) {
      if (expectedHeader && received < expectedHeader.length) {
        const want = expectedHeader.subarray(received, received + chunk.byteLength);
        if (want.some((b, i) => b !== chunk[i])) {
          throw new DamagedFileError("The file does not match its sealed name: it is another file's.");
        }
      }
      received += chunk.byteLength;
      onProgress(received);
    },
    onEnd() {
      if (expectedHeader && received < expectedHeader.length) {
        throw new DamagedFileError("The file ends inside its header.");
      }
    },
  });
  return decryptAge(counted, secret);
}
