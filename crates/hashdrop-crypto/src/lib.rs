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
//! - [`decrypt`]: any reader to any writer; [`SeekableDecryptor`]: byte ranges.
//! - [`Vault`]: the user's keys, itself an age file under a passphrase.
//!
//! Memory stays at three buffers of 256 KiB whatever the input size.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decrypt;
mod digest;
mod encrypt;
mod error;
mod hashing;
mod header;
mod keys;
mod stream;
mod vault;

pub use decrypt::{decrypt, DecryptSummary, SeekableDecryptor};
pub use encrypt::{encrypt, EncryptSummary, EncryptingBody, Encryption, SummaryHandle};
pub use digest::{Digest32, DIGEST_KEY_LABEL};
pub use error::{CryptoError, Result};
pub use hashing::to_hex;
pub use keys::{
    AgeIdentity, AgeRecipient, Keys, Passphrase, Recipients, WorkFactor, DEFAULT_MAX_WORK_FACTOR,
};
pub use stream::{payload_len, plaintext_len, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, TAG_SIZE};
pub use vault::{MergeReport, Vault};

/// Re-exported so callers can build [`Passphrase`]s and read secrets without a direct
/// dependency on `secrecy`.
pub use age::secrecy;
