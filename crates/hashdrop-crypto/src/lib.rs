//! Hashdrop's encryption core.
//!
//! Every object Hashdrop stores is a standard [age](https://age-encryption.org/v1) file,
//! so the stock `age` tool can always recover it. The age crate builds and checks the
//! header (recipients, scrypt, header MAC); the payload (age's STREAM: 64 KiB
//! ChaCha20-Poly1305 chunks) runs through OpenSSL so it goes at the speed of the CPU's
//! vector units, and the plaintext's SHA-256 is computed on a second core from the same
//! single read. See `docs/FORMAT.md` for the object format.
//!
//! - [`encrypt`] / [`Encryption`]: any reader to any writer, or to an async
//!   [`EncryptingBody`] usable as a streaming HTTP request body.
//! - [`decrypt`]: any reader to any writer; [`SeekableDecryptor`]: byte ranges;
//!   [`decrypt_resumed`]: the rest of a decryption that stopped after whole chunks
//!   (a resumed download), from the header ([`age_header_len`]) and the plaintext kept.
//! - [`Encryption::encrypt_parts`] / [`decrypt_parts`] / [`PartDecryption`]: a plaintext
//!   in memory cut into parts (whole STREAM chunks) sealed or opened on all cores, with
//!   the keyed digest (keyed BLAKE3 under a key derived from the file key) computed in
//!   the same pass, per part and for the file; [`Encryption::seal_part`] and
//!   [`PartDecryption::open_part`] for one part at a time.
//! - [`Vault`]: the user's keys, itself an age file under a passphrase.
//!
//! The streaming paths keep memory at three buffers of 256 KiB whatever the input size;
//! the part-wise paths work on caller-held buffers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decrypt;
mod digest;
mod encrypt;
mod error;
mod hashing;
mod header;
mod keys;
mod metadata;
mod parts;
mod resume;
mod stream;
mod vault;

pub use decrypt::{decrypt, decrypt_with, DecryptSummary, PlainDigest, SeekableDecryptor};
pub use digest::{Digest32, DIGEST_KEY_LABEL};
pub use encrypt::{encrypt, EncryptSummary, EncryptingBody, Encryption, SummaryHandle};
pub use error::{CryptoError, Result};
pub use hashing::to_hex;
pub use header::age_header_len;
pub use keys::{
    AgeIdentity, AgeRecipient, Keys, OpenedFileKey, Passphrase, Recipients, WorkFactor,
    DEFAULT_MAX_WORK_FACTOR,
};
pub use metadata::{open_metadata, open_metadata_keeping_key, METADATA_KEY_LABEL};
pub use parts::{decrypt_parts, PartDecryption, PartLayout, PartsSummary, DEFAULT_PART_SIZE};
pub use resume::decrypt_resumed;
pub use stream::{payload_len, plaintext_len, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, TAG_SIZE};
pub use vault::{MergeReport, Vault};

/// Re-exported so callers can build [`Passphrase`]s and read secrets without a direct
/// dependency on `secrecy`.
pub use age::secrecy;
