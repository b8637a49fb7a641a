// Decrypting an age file in the browser with the payload run through libsodium's
// WebAssembly ChaCha20-Poly1305 instead of age-encryption's pure-JS one.
//
// Why: in Chromium the pure-JS STREAM path opens a few tens of MB/s, well under what a
// browser downloads on a fast link, so a large file is bounded by decryption (see
// docs/BENCHMARKS.md, "Web decryption"). The header is still age-encryption's job:
// it parses the stanzas, unwraps the file key with the X25519 / hybrid / scrypt
// identity and checks the header MAC (Decrypter.decryptHeader). Only the payload
// layer — HKDF-SHA-256(file key, nonce, "payload") and the 64 KiB STREAM chunks — runs
// here, byte for byte as docs/FORMAT.md and the age spec describe it.
//
// Same signature and error classes as decrypt.ts's decryptAge, so the page can swap
// one import for the other. Where WebAssembly cannot run (a Content-Security-Policy
// without 'wasm-unsafe-eval', a locked-down browser), the same STREAM code runs on
// @noble/ciphers — age-encryption's own pure-JS AEAD — slower but byte for byte alike.

import { Decrypter, armor, identityToRecipient } from "age-encryption";
import { type Aead, payloadAead, SEALED_CHUNK_BYTES, TAG_BYTES } from "./aead";
import { DamagedFileError, type Secret, WrongKeyError, WrongPassphraseError } from "./decrypt";

export { DamagedFileError, WrongKeyError, WrongPassphraseError };

const PAYLOAD_NONCE_BYTES = 16;
// A header is a few hundred bytes; a stream that has not shown its MAC line by this
// point is not an age file we would ever have written, and buffering more is a waste.
const MAX_HEADER_BYTES = 1024 * 1024;
// Armored files must be decoded whole; Hashdrop stores binary, so armor is only here
// for completeness and kept to small files.
const MAX_ARMORED_BYTES = 16 * 1024 * 1024;
const NO_MATCH_MESSAGE = "no identity matched";

export type { Secret };

/**
 * Decrypts an age file as it streams in. Resolves once the header is verified (so a
 * wrong key or passphrase rejects here, before any plaintext); the returned stream
 * errors with DamagedFileError if the payload is damaged, truncated or extended, after
 * releasing only the chunks that authenticated.
 */
export async function decryptAge(
  ciphertext: ReadableStream<Uint8Array>,
  secret: Secret,
): Promise<ReadableStream<Uint8Array>> {
  return openPayload(await openHeader(ciphertext, secret));
}

/** Opens the payload after `header` on this thread, chunk after chunk. */
export async function openPayload({ payloadKey, source, readAhead }: OpenedHeader): Promise<ReadableStream<Uint8Array>> {
  const { aead } = await payloadAead();
  return openPayloadFrom(source, readAhead, new StreamOpener(payloadKey, aead));
}

/** An age file whose header has been verified: what is left is its STREAM payload. */
export interface OpenedHeader {
  /** HKDF-SHA-256(file key, payload nonce, "payload"). */
  payloadKey: Uint8Array;
  /** The rest of the ciphertext, after `readAhead`. */
  source: ReadableStreamDefaultReader<Uint8Array>;
  /** The stream `source` reads (locked to it): its reader may be swapped for a BYOB one. */
  stream: ReadableStream<Uint8Array>;
  /** Payload bytes already read past the nonce (may be empty). */
  readAhead: Uint8Array;
}

/**
 * Reads and checks the header with `secret` and derives the payload key: the part of
 * decryptAge that both payload paths (this module's and parallel.ts's) share. Rejects
 * with WrongKeyError / WrongPassphraseError / DamagedFileError, after cancelling the
 * ciphertext, before any plaintext exists.
 */
export async function openHeader(ciphertext: ReadableStream<Uint8Array>, secret: Secret): Promise<OpenedHeader> {
  const decrypter = await decrypterFor(secret);
  let input = new PrefixedReader(ciphertext);
  const reader = input.reader;
  try {
    if (await input.startsWithArmor()) {
      input = new PrefixedReader(singleChunk(await dearmor(input)));
    }
    const header = await input.readHeader();
    let fileKey: Uint8Array;
    try {
      fileKey = await decrypter.decryptHeader(header);
    } catch (e) {
      throw headerError(e, secret);
    }
    const nonce = await input.readExactly(PAYLOAD_NONCE_BYTES);
    if (nonce === null) throw new DamagedFileError("The file ends before its payload starts.");
    const payloadKey = await derivePayloadKey(fileKey, nonce);
    return { payloadKey, ...input.detach() };
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
}

/**
 * The file key of an age header given whole (header and payload nonce, as the share
 * API hands it out with a sealed name), opened with `secret`. Rejects like openHeader.
 */
export async function fileKeyOf(headerAndNonce: Uint8Array, secret: Secret): Promise<Uint8Array> {
  const decrypter = await decrypterFor(secret);
  const header = await new PrefixedReader(singleChunk(headerAndNonce)).readHeader();
  try {
    return await decrypter.decryptHeader(header);
  } catch (e) {
    throw headerError(e, secret);
  }
}

async function decrypterFor(secret: Secret): Promise<Decrypter> {
  const decrypter = new Decrypter();
  if ("passphrase" in secret) {
    decrypter.addPassphrase(secret.passphrase);
    return decrypter;
  }
  if ("fileKey" in secret) {
    // Answers any stanza with the key; age-encryption then checks the header's MAC
    // with it, so it opens only the file it came from.
    const fileKey = secret.fileKey;
    decrypter.addIdentity({ unwrapFileKey: () => fileKey });
    return decrypter;
  }
  // Decode the identity up front, so a mangled link reads as a bad key rather than
  // as a damaged file when age-encryption first touches it inside the header check.
  try {
    const identity = secret.identity.trim();
    await identityToRecipient(identity);
    decrypter.addIdentity(identity);
  } catch {
    throw new WrongKeyError("The key in the link is not a valid age identity.");
  }
  return decrypter;
}

// age-encryption throws plain Errors; the only one that means "this secret does not
// open the file" is the no-match one. Everything else (bad stanza, bad MAC, bad
// version line, excessive scrypt work) is a property of the file.
function headerError(e: unknown, secret: Secret): Error {
  const message = e instanceof Error ? e.message : String(e);
  if (message.includes(NO_MATCH_MESSAGE)) {
    return "passphrase" in secret
      ? new WrongPassphraseError("The passphrase does not open this file.")
      : new WrongKeyError("The key in the link does not open this file.");
  }
  if (message.includes("scrypt work factor is too high")) {
    return new DamagedFileError("The file asks for more passphrase work than a browser allows.");
  }
  return new DamagedFileError(`The file's header is damaged (${message}).`);
}

/** Which AEAD decryptAge will use in this context: "wasm", or "js" where WASM is blocked. */
export async function payloadEngine(): Promise<"wasm" | "js"> {
  return (await payloadAead()).engine;
}

async function derivePayloadKey(fileKey: Uint8Array, nonce: Uint8Array): Promise<Uint8Array> {
  const ikm = await crypto.subtle.importKey("raw", fileKey as BufferSource, "HKDF", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: nonce as BufferSource,
      info: new TextEncoder().encode("payload"),
    },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/**
 * age's STREAM: 64 KiB plaintext chunks, each sealed with ChaCha20-Poly1305 under a
 * 12-byte nonce of an 11-byte big-endian counter and a last-chunk flag.
 *
 * A full sealed chunk is opened as soon as it is complete: as a middle chunk first, and
 * if that fails, as the last one — after which any further byte is an error. A short
 * chunk can only be the last. This is how age's reference implementations read the
 * stream, so a damaged file releases exactly the plaintext the CCTV vectors name.
 */
class StreamOpener {
  private readonly nonce = new Uint8Array(12);
  private readonly held = new Uint8Array(SEALED_CHUNK_BYTES);
  private heldBytes = 0;
  private chunksOpened = 0;
  private sawLastChunk = false;

  constructor(
    private readonly key: Uint8Array,
    private readonly aead: Aead,
  ) {}

  /** Opens every chunk `data` completes; throws DamagedFileError on the first bad one. */
  push(data: Uint8Array, emit: (plaintext: Uint8Array) => void): void {
    let offset = 0;
    while (offset < data.length) {
      if (this.sawLastChunk) throw new DamagedFileError("The file has extra data after its last chunk.");
      // A whole chunk in this piece: open it in place instead of copying it first.
      if (this.heldBytes === 0 && data.length - offset >= SEALED_CHUNK_BYTES) {
        emit(this.openFull(data.subarray(offset, offset + SEALED_CHUNK_BYTES)));
        offset += SEALED_CHUNK_BYTES;
        continue;
      }
      const n = Math.min(SEALED_CHUNK_BYTES - this.heldBytes, data.length - offset);
      this.held.set(data.subarray(offset, offset + n), this.heldBytes);
      this.heldBytes += n;
      offset += n;
      if (this.heldBytes === SEALED_CHUNK_BYTES) {
        emit(this.openFull(this.held));
        this.heldBytes = 0;
      }
    }
  }

  /** The input has ended: open the short last chunk, or say what is missing. */
  finish(emit: (plaintext: Uint8Array) => void): void {
    if (this.sawLastChunk) return;
    if (this.heldBytes < TAG_BYTES) {
      throw new DamagedFileError("The file is cut short (its last chunk is missing or incomplete).");
    }
    // Only a file whose whole plaintext is empty may end in an empty chunk.
    if (this.heldBytes === TAG_BYTES && this.chunksOpened > 0) {
      throw new DamagedFileError("The file is damaged (it ends in an empty chunk).");
    }
    const plain = this.tryOpen(this.held.subarray(0, this.heldBytes), true);
    if (plain === null) {
      throw new DamagedFileError(
        `The file is damaged or cut short (chunk ${this.chunksOpened + 1} does not authenticate as the last one).`,
      );
    }
    this.sawLastChunk = true;
    emit(plain);
  }

  private openFull(sealed: Uint8Array): Uint8Array {
    let plain = this.tryOpen(sealed, false);
    if (plain === null) {
      plain = this.tryOpen(sealed, true);
      if (plain === null) {
        throw new DamagedFileError(`The file is damaged (chunk ${this.chunksOpened + 1} does not authenticate).`);
      }
      this.sawLastChunk = true;
    }
    this.advance();
    return plain;
  }

  private tryOpen(sealed: Uint8Array, last: boolean): Uint8Array | null {
    this.nonce[11] = last ? 1 : 0;
    return this.aead(sealed, this.nonce, this.key);
  }

  private advance(): void {
    this.chunksOpened++;
    // Counter bytes 0..10, big-endian; byte 11 is the flag.
    for (let i = 10; i >= 0; i--) {
      this.nonce[i] = (this.nonce[i]! + 1) & 0xff;
      if (this.nonce[i] !== 0) return;
    }
    throw new DamagedFileError("The file has more chunks than age allows.");
  }
}

/** The STREAM payload layer as a TransformStream (for callers that pipe). */
export async function openStreamPayload(key: Uint8Array): Promise<TransformStream<Uint8Array, Uint8Array>> {
  const opener = new StreamOpener(key, (await payloadAead()).aead);
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(data, controller) {
      opener.push(data, (p) => controller.enqueue(p));
    },
    flush(controller) {
      opener.finish((p) => controller.enqueue(p));
    },
  });
}

/**
 * The same layer pulled straight from the ciphertext reader: one stream between the
 * network and the consumer instead of a source, a pipe and a transform, which is
 * measurably cheaper per 64 KiB chunk in Chromium. Keeps up to two plaintext chunks
 * decrypted ahead of the consumer.
 */
function openPayloadFrom(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  readAhead: Uint8Array,
  opener: StreamOpener,
): ReadableStream<Uint8Array> {
  let pending: Uint8Array | null = readAhead.length > 0 ? readAhead : null;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let emitted = false;
        const emit = (p: Uint8Array) => {
          controller.enqueue(p);
          emitted = true;
        };
        try {
          while (!emitted) {
            if (pending !== null) {
              opener.push(pending, emit);
              pending = null;
              continue;
            }
            const { done, value } = await reader.read();
            if (done) {
              opener.finish(emit);
              controller.close();
              return;
            }
            opener.push(value, emit);
          }
        } catch (e) {
          await reader.cancel(e).catch(() => {});
          throw e;
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    new CountQueuingStrategy({ highWaterMark: 2 }),
  );
}

/** A stream reader that can hand back bytes it read ahead. */
class PrefixedReader {
  private buffered: Uint8Array = new Uint8Array(0);
  private ended = false;

  readonly reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(private readonly stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const { done, value } = await this.reader.read();
    if (done) {
      this.ended = true;
      return false;
    }
    if (value.length > 0) this.buffered = concat(this.buffered, value);
    return true;
  }

  /** Whether the first non-blank byte starts an ASCII armor line ("-----BEGIN"). */
  async startsWithArmor(): Promise<boolean> {
    for (;;) {
      const first = this.buffered.findIndex((b) => !isAsciiSpace(b));
      if (first >= 0) return this.buffered[first] === 0x2d; // '-'
      if (!(await this.more())) return false;
    }
  }

  /** The header through its MAC line's newline: the first line that starts "---". */
  async readHeader(): Promise<Uint8Array> {
    let searchFrom = 0;
    for (;;) {
      const macLine = indexOf(this.buffered, LINE_START_DASHES, searchFrom);
      if (macLine >= 0) {
        const end = this.buffered.indexOf(0x0a, macLine + 1);
        if (end >= 0) return this.take(end + 1);
      }
      if (this.buffered.length > MAX_HEADER_BYTES) {
        throw new DamagedFileError("The file's header is damaged (it does not end).");
      }
      searchFrom = macLine >= 0 ? macLine : Math.max(0, this.buffered.length - 3);
      if (!(await this.more())) {
        throw new DamagedFileError("The file ends inside its header.");
      }
    }
  }

  async readExactly(n: number): Promise<Uint8Array | null> {
    while (this.buffered.length < n) {
      if (!(await this.more())) return null;
    }
    return this.take(n);
  }

  async readAll(limit: number): Promise<Uint8Array> {
    while (await this.more()) {
      if (this.buffered.length > limit) {
        throw new DamagedFileError("The armored file is too large to open here.");
      }
    }
    return this.take(this.buffered.length);
  }

  /** The underlying reader and the bytes already read past what was asked for. */
  detach(): { source: ReadableStreamDefaultReader<Uint8Array>; stream: ReadableStream<Uint8Array>; readAhead: Uint8Array } {
    return { source: this.reader, stream: this.stream, readAhead: this.take(this.buffered.length) };
  }

  private take(n: number): Uint8Array {
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }
}

async function dearmor(input: PrefixedReader): Promise<Uint8Array> {
  const text = new TextDecoder("utf-8", { fatal: true });
  try {
    return armor.decode(text.decode(await input.readAll(MAX_ARMORED_BYTES)));
  } catch (e) {
    if (e instanceof DamagedFileError) throw e;
    throw new DamagedFileError(`The file's armor is damaged (${e instanceof Error ? e.message : e}).`);
  }
}

function singleChunk(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

const LINE_START_DASHES = new TextEncoder().encode("\n---");

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = haystack.indexOf(needle[0]!, from); i >= 0; i = haystack.indexOf(needle[0]!, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function isAsciiSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}
