// What can go wrong when opening a share link, as the page needs to tell it apart:
// the key or passphrase does not open this file, or the file itself is not intact.
// Stand-ins until the web branch's decrypt.ts exports the same three classes; then
// stream-wasm.ts imports them from "./decrypt" and this file goes away.

/** The identity in the link does not open any of the file's recipient stanzas. */
export class WrongKeyError extends Error {
  override name = "WrongKeyError";
}

/** The passphrase does not open the file's scrypt stanza. */
export class WrongPassphraseError extends Error {
  override name = "WrongPassphraseError";
}

/** The ciphertext is malformed, tampered with, truncated or extended. */
export class DamagedFileError extends Error {
  override name = "DamagedFileError";
}
