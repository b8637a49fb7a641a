// A share's sealed name and media type (docs/FORMAT.md, "Sealed name and media type"):
// the header the share API hands out gives the file key with the link's key or the
// passphrase; HKDF-SHA-256(file key, info "hashdrop.metadata.v1") gives the key of one
// final STREAM chunk holding {"name": ..., "type": ...}. No DOM access.

import { payloadAead, setChunkNonce } from "./aead";
import { DamagedFileError, type Secret } from "./decrypt";
import { fileKeyOf } from "./stream-wasm";

/** hashdrop-wire SealedMetadata, as a recipient gets it (no owner copy). */
export interface SealedMetadata {
  age_header: string;
  sealed: string;
}

/** What a sealed name opens to. */
export interface FileMetadata {
  name: string;
  type?: string;
}

/**
 * A sealed name opened, with the header it opened with (the file must start so) and
 * that header's file key (which then opens the file without a second scrypt).
 */
export interface OpenedMetadata {
  meta: FileMetadata;
  header: Uint8Array;
  fileKey: Uint8Array;
}

const LABEL = new TextEncoder().encode("hashdrop.metadata.v1");

/**
 * Opens `meta` with `secret`. Rejects with WrongKeyError / WrongPassphraseError when
 * the secret does not open the header, DamagedFileError when anything was altered.
 */
export async function openMetadata(meta: SealedMetadata, secret: Secret): Promise<OpenedMetadata> {
  const header = fromBase64(meta.age_header);
  const sealed = fromBase64(meta.sealed);
  const fileKey = await fileKeyOf(header, secret);
  const ikm = await crypto.subtle.importKey("raw", fileKey as BufferSource, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: LABEL },
    ikm,
    256,
  );
  const nonce = new Uint8Array(12);
  setChunkNonce(nonce, 0, true);
  const { aead } = await payloadAead();
  const plain = aead(sealed, nonce, new Uint8Array(bits));
  if (plain === null) throw new DamagedFileError("The file's sealed name was altered.");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
  } catch {
    throw new DamagedFileError("The file's sealed name is not readable.");
  }
  const name = (parsed as { name?: unknown }).name;
  const type = (parsed as { type?: unknown }).type;
  // A name a person could have given: 1 to 255 characters, no control characters.
  const length = typeof name === "string" ? [...name].length : 0;
  if (typeof name !== "string" || length < 1 || length > 255 || /\p{Cc}/u.test(name)) {
    throw new DamagedFileError("The file's sealed name is not readable.");
  }
  return { meta: typeof type === "string" ? { name, type } : { name }, header, fileKey };
}

function fromBase64(text: string): Uint8Array {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    throw new DamagedFileError("The file's sealed name is not readable.");
  }
}
