// Streaming age decryption for the recipient page and its service worker.
// No DOM access: this module runs in a window and in a service worker alike, and an
// alternative implementation (WASM payload path) must keep exactly this interface.

import { Decrypter } from "age-encryption";

/**
 * The secret a share is opened with: the link's identity, a typed passphrase, or the
 * file key its sealed name was opened with (so a passphrase's scrypt runs once, not
 * once for the name and again for the content; the header's MAC is still checked
 * with it).
 */
export type Secret = { identity: string } | { passphrase: string } | { fileKey: Uint8Array };

/** The key in the link does not open this file (or is not an age key at all). */
export class WrongKeyError extends Error {
  override name = "WrongKeyError";
}

/** The passphrase does not open this file. */
export class WrongPassphraseError extends Error {
  override name = "WrongPassphraseError";
}

/** The file fails authentication: it was altered, truncated or is not an age file. */
export class DamagedFileError extends Error {
  override name = "DamagedFileError";
}

/**
 * Decrypts an age file as it streams in. Resolves once the header is verified (so a
 * wrong key or passphrase rejects here, before any plaintext exists); the returned
 * stream then yields plaintext and errors with DamagedFileError if any chunk fails
 * authentication or the file ends early. Errors of the ciphertext stream itself
 * (network) pass through unchanged, so a dropped connection is not called tampering.
 */
export async function decryptAge(
  ciphertext: ReadableStream<Uint8Array>,
  secret: { identity: string } | { passphrase: string },
): Promise<ReadableStream<Uint8Array>> {
  const decrypter = new Decrypter();
  if ("identity" in secret) {
    try {
      decrypter.addIdentity(secret.identity.trim());
    } catch {
      throw new WrongKeyError("the key in the link is not a valid age key");
    }
  } else {
    decrypter.addPassphrase(secret.passphrase);
  }

  // Remember a failure of the source, so that an error of the plaintext stream can be
  // told apart: source failures are rethrown as they are, everything else is damage.
  let sourceError: unknown = undefined;
  const sourceReader = ciphertext.getReader();
  const source = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await sourceReader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        sourceError = e ?? new Error("the download failed");
        controller.error(sourceError);
      }
    },
    cancel(reason) {
      return sourceReader.cancel(reason);
    },
  });

  let plain: ReadableStream<Uint8Array>;
  try {
    plain = await decrypter.decrypt(source);
  } catch (e) {
    if (sourceError !== undefined) throw sourceError;
    throw classifyHeaderError(e, secret);
  }

  const plainReader = plain.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await plainReader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch {
        controller.error(
          sourceError ??
            new DamagedFileError("the file was altered or damaged after it was encrypted"),
        );
      }
    },
    cancel(reason) {
      return plainReader.cancel(reason);
    },
  });
}

function classifyHeaderError(e: unknown, secret: Secret): Error {
  const msg = e instanceof Error ? e.message : String(e);
  if (msg.includes("no identity matched")) {
    return "identity" in secret
      ? new WrongKeyError("the key in the link does not open this file")
      : new WrongPassphraseError("the passphrase does not open this file");
  }
  if (msg.includes("scrypt work factor is too high")) {
    return new DamagedFileError("the file asks for more passphrase work than a browser allows");
  }
  return new DamagedFileError("the file's header is damaged or it is not an age file");
}
