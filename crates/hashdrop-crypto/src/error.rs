//! The distinct ways encrypting or decrypting can fail, each one something a person can
//! be told about in a sentence.

use std::io;

/// Everything that can go wrong in the encryption core.
///
/// The variants are deliberately coarse where a finer split would not change what the
/// user should do, and fine where it does: a wrong key asks for another key, a damaged
/// payload asks for a fresh download.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input does not start like an age file, or its header cannot be parsed.
    #[error("not an age file, or its header is damaged")]
    HeaderDamaged,
    /// ASCII armor around the age file is malformed.
    #[error("the ASCII armor around the age file is damaged")]
    ArmorDamaged,
    /// None of the supplied keys (or the passphrase) opens the file.
    #[error("no matching key: the key or passphrase is wrong for this file")]
    NoMatchingKey,
    /// A key matched, but the header's MAC does not verify: the header was altered.
    #[error("the file header failed its integrity check (header MAC)")]
    HeaderMacFailed,
    /// The passphrase stanza asks for more scrypt work than we accept.
    #[error(
        "the passphrase file needs scrypt work factor 2^{required}, more than the accepted 2^{max}"
    )]
    ExcessiveWork {
        /// The log2 work factor in the file.
        required: u8,
        /// The largest log2 work factor we accept.
        max: u8,
    },
    /// A payload chunk failed authentication: the ciphertext was altered.
    #[error("the file is damaged or was tampered with (chunk {chunk} failed authentication)")]
    PayloadDamaged {
        /// Zero-based index of the first chunk that failed.
        chunk: u64,
    },
    /// The payload stops before its final chunk.
    #[error("the file is truncated (it ends after chunk {chunk} without a final chunk)")]
    PayloadTruncated {
        /// Zero-based index of the chunk where the data ended.
        chunk: u64,
    },
    /// The plaintext changed length while it was being encrypted.
    #[error("the input was {actual} bytes long, not the {expected} bytes announced; did the file change during upload?")]
    LengthMismatch {
        /// The announced plaintext length.
        expected: u64,
        /// The number of bytes actually read.
        actual: u64,
    },
    /// The plaintext decrypted and authenticated, but its keyed digest is not the one
    /// expected: this is not the file that was announced.
    #[error("the decrypted file does not match its keyed digest")]
    DigestMismatch,
    /// Sealed metadata (a file's name and type) failed authentication: altered, or
    /// sealed for another file.
    #[error("the file's sealed name and type are damaged or belong to another file")]
    MetadataDamaged,
    /// A part size that does not cut a file into whole BLAKE3 subtrees and STREAM
    /// chunks.
    #[error("part size {part_size} is not a power of two of at least 64 KiB")]
    InvalidPartSize {
        /// The part size asked for.
        part_size: u64,
    },
    /// An output buffer of the wrong size was passed.
    #[error("the output buffer is {actual} bytes, it must be exactly {expected}")]
    BufferLength {
        /// The size it must have.
        expected: u64,
        /// The size it has.
        actual: u64,
    },
    /// A key or recipient string could not be parsed.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The vault decrypted but its contents are not a Hashdrop vault.
    #[error("the vault is not in a format this version understands: {0}")]
    VaultFormat(String),
    /// A requested plaintext range lies outside the file.
    #[error("range {start}..{end} is outside the plaintext of {len} bytes")]
    RangeOutOfBounds {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Plaintext length.
        len: u64,
    },
    /// A resumed decryption was handed less plaintext than the chunks before its
    /// resume point hold.
    #[error("the plaintext already written is {actual} bytes, fewer than the {expected} bytes before the resume point")]
    PrefixTooShort {
        /// Plaintext bytes of the chunks before the resume point.
        expected: u64,
        /// Bytes the prefix reader gave.
        actual: u64,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The cryptographic library reported an internal failure.
    #[error("cryptographic backend failure: {0}")]
    Backend(String),
}

impl CryptoError {
    /// A stable short code for logs, JSON output and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HeaderDamaged => "header_damaged",
            Self::ArmorDamaged => "armor_damaged",
            Self::NoMatchingKey => "no_matching_key",
            Self::HeaderMacFailed => "header_mac_failed",
            Self::ExcessiveWork { .. } => "excessive_work",
            Self::PayloadDamaged { .. } => "payload_damaged",
            Self::PayloadTruncated { .. } => "payload_truncated",
            Self::LengthMismatch { .. } => "length_mismatch",
            Self::DigestMismatch => "digest_mismatch",
            Self::MetadataDamaged => "metadata_damaged",
            Self::InvalidPartSize { .. } => "invalid_part_size",
            Self::BufferLength { .. } => "buffer_length",
            Self::InvalidKey(_) => "invalid_key",
            Self::VaultFormat(_) => "vault_format",
            Self::RangeOutOfBounds { .. } => "range_out_of_bounds",
            Self::PrefixTooShort { .. } => "prefix_too_short",
            Self::Io(_) => "io",
            Self::Backend(_) => "backend",
        }
    }

    /// Whether the failure is in the payload (after the header authenticated).
    pub fn is_payload_failure(&self) -> bool {
        matches!(
            self,
            Self::PayloadDamaged { .. } | Self::PayloadTruncated { .. }
        )
    }

    /// Translate an age header error. `max_work` is the work factor cap we set.
    pub(crate) fn from_age(err: age::DecryptError, max_work: u8) -> Self {
        use age::DecryptError as E;
        match err {
            E::InvalidMac => Self::HeaderMacFailed,
            // age reports a failing passphrase stanza as a decryption failure; for the
            // user that is simply the wrong passphrase.
            E::NoMatchingKeys | E::DecryptionFailed => Self::NoMatchingKey,
            E::ExcessiveWork { required, .. } => Self::ExcessiveWork {
                required,
                max: max_work,
            },
            E::Io(e) if e.kind() == io::ErrorKind::InvalidData => Self::ArmorDamaged,
            E::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => Self::HeaderDamaged,
            E::Io(e) => Self::Io(e),
            _ => Self::HeaderDamaged,
        }
    }
}

impl From<openssl::error::ErrorStack> for CryptoError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::Backend(e.to_string())
    }
}

/// Result alias for the crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
