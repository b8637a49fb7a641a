//! A stored file: its states, and the rules for the values a client sends about it.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// The facts of a live file that stay fixed until it stops being live: what the
/// public paths need, and all the share cache may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FileFacts {
    /// Owner.
    pub user_id: String,
    /// `{user_hash}/{file_id}`.
    pub object_key: String,
    /// Display name.
    pub file_name: String,
    /// Ciphertext bytes.
    pub encrypted_size: i64,
    /// `vault` or `passphrase`.
    pub key_mode: String,
    /// Owner-set expiry (unix ms).
    pub expires_at: Option<i64>,
    /// Owner-set total download cap.
    pub max_downloads: Option<i64>,
    /// The keyed digest a recipient's `--verify` checks (empty for older uploads).
    #[serde(default)]
    pub keyed_digest: String,
    /// The sealed name and type (empty for older uploads).
    #[serde(default)]
    #[sqlx(flatten)]
    pub meta: SealedMeta,
}

/// Where a file is in its life.
///
/// ```text
/// Pending ──complete──▶ Uploaded ──expiry──▶ Deleted
///    │ sweeper, wrong size
///    └──────────────────▶ Failed
/// ```
/// An owner's delete removes the row from any state. `Pending` and `Uploaded` are
/// live: they hold quota and an object key, and leaving them hands both back once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Presigned; the object may be arriving.
    Pending,
    /// Complete and downloadable.
    Uploaded,
    /// Never completed, or completed with the wrong size.
    Failed,
    /// Its life ended (expired); the record stays a day for the owner's listing.
    Deleted,
}

impl FileStatus {
    /// Every state, in the order of a file's life.
    pub const ALL: [FileStatus; 4] = [
        FileStatus::Pending,
        FileStatus::Uploaded,
        FileStatus::Failed,
        FileStatus::Deleted,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Pending => "pending",
            FileStatus::Uploaded => "uploaded",
            FileStatus::Failed => "failed",
            FileStatus::Deleted => "deleted",
        }
    }

    /// Reads the stored spelling; the database's CHECK constraint admits no other.
    pub fn parse(s: &str) -> Option<FileStatus> {
        FileStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the file holds quota and an object (only these states can end).
    pub fn is_live(self) -> bool {
        matches!(self, FileStatus::Pending | FileStatus::Uploaded)
    }

    /// The state an ending moves a live file to.
    pub fn ended_by(ending: Ending) -> FileStatus {
        match ending {
            Ending::Failed => FileStatus::Failed,
            Ending::Expired => FileStatus::Deleted,
        }
    }
}

/// Why a live file's life ends without its owner deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The upload never completed, or completed with the wrong size.
    Failed,
    /// The owner's expiry time passed.
    Expired,
}

/// A full file id (a UUID) in canonical lowercase form.
pub fn parse_file_id(s: &str) -> Result<String> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.to_string())
        .map_err(|_| Error::Invalid("invalid file id".into()))
}

/// A file id prefix: 1..=36 chars of hex and dashes (so it is safe inside LIKE).
pub fn parse_id_prefix(q: Option<&str>) -> Result<String> {
    let p = q
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Invalid("missing id query parameter".into()))?
        .to_ascii_lowercase();
    if p.len() > 36 || !p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Invalid("invalid file id prefix".into()));
    }
    Ok(p)
}

/// 1 to 255 printable characters, trimmed.
pub fn parse_file_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "file_name must be 1 to 255 printable characters".into(),
        ));
    }
    Ok(name)
}

/// RFC 6838 `restricted-name`: 1 to 127 characters, a letter or digit first, then
/// letters, digits and `!#$&-^_.+`.
fn is_restricted_name(s: &str) -> bool {
    (1..=127).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// An optional `type/subtype` media type (no parameters), at most 255 bytes; it is
/// stored and may be shown, so anything else is refused before anything is written.
pub fn parse_mime_type(m: Option<&str>) -> Result<Option<String>> {
    let Some(m) = m else { return Ok(None) };
    let valid = m.len() <= 255
        && m.split_once('/')
            .is_some_and(|(t, sub)| is_restricted_name(t) && is_restricted_name(sub));
    if !valid {
        return Err(Error::Invalid(
            "mime_type must be a type/subtype media type of at most 255 characters".into(),
        ));
    }
    Ok(Some(m.to_ascii_lowercase()))
}

/// The check an upload recorded over its plaintext, in lowercase hex. A file has at
/// most one; an empty stored column means "not this kind".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainDigest {
    /// SHA-256, sent by older clients: anyone can test a guess of the file against it.
    Sha256(String),
    /// Keyed BLAKE3 under a key derived from the file key: only key holders can.
    Keyed(String),
}

impl PlainDigest {
    /// From the two stored columns (at most one non-empty).
    pub fn from_columns(plaintext_hash: &str, keyed_digest: &str) -> Option<Self> {
        if !keyed_digest.is_empty() {
            Some(Self::Keyed(keyed_digest.to_owned()))
        } else if !plaintext_hash.is_empty() {
            Some(Self::Sha256(plaintext_hash.to_owned()))
        } else {
            None
        }
    }

    /// The two stored columns: (plaintext_hash, keyed_digest).
    pub fn columns(&self) -> (&str, &str) {
        match self {
            Self::Sha256(h) => (h.as_str(), ""),
            Self::Keyed(h) => ("", h.as_str()),
        }
    }
}

/// The digest a request carries, if any: `plaintext_hash` (SHA-256) or
/// `keyed_digest`, never both; empty strings count as absent.
pub fn parse_digest(
    plaintext_hash: Option<&str>,
    keyed_digest: Option<&str>,
) -> Result<Option<PlainDigest>> {
    fn given(v: Option<&str>) -> Option<&str> {
        v.filter(|h| !h.is_empty())
    }
    match (given(plaintext_hash), given(keyed_digest)) {
        (Some(_), Some(_)) => Err(Error::Invalid(
            "send plaintext_hash or keyed_digest, not both".into(),
        )),
        (Some(h), None) => Ok(Some(PlainDigest::Sha256(hex32("plaintext_hash", h)?))),
        (None, Some(h)) => Ok(Some(PlainDigest::Keyed(hex32("keyed_digest", h)?))),
        (None, None) => Ok(None),
    }
}

/// 32 bytes in hex, lowercased.
fn hex32(field: &str, h: &str) -> Result<String> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(format!("{field} must be 64 hex characters")))
    }
}

/// A name and media type sealed on the client, as stored: base64 strings the server
/// cannot open, checked for shape and size only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SealedMeta {
    /// The file's age header.
    #[serde(default)]
    pub meta_header: String,
    /// The metadata under a key derived from the file key.
    #[serde(default)]
    pub meta_sealed: String,
}

impl SealedMeta {
    /// Whether the file has sealed metadata (older rows have none).
    pub fn is_present(&self) -> bool {
        !self.meta_sealed.is_empty()
    }
}

/// Largest base64 age header accepted: two X25519 stanzas or one scrypt stanza take
/// about 400 characters; this leaves room for other recipient types.
const MAX_HEADER_B64: usize = 4096;
/// Largest sealed metadata: a 255-character name and a 255-byte type in JSON, as
/// UTF-8 (up to 4 bytes a character), sealed and in base64, fit well inside.
const MAX_SEALED_B64: usize = 4096;
/// Largest owner copy: the same JSON as a small age file to one X25519 key.
const MAX_OWNER_COPY_B64: usize = 8192;

/// Sealed metadata as a presign brings it: what recipients get, and the owner's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSealedMeta {
    /// For link holders.
    pub public: SealedMeta,
    /// For the owner's listing.
    pub owner_copy: String,
}

/// Checks sealed metadata: standard base64 of the sizes above, the header an age v1
/// header, the sealed part at least an AEAD tag, the owner copy (optional) an age file.
pub fn parse_sealed_meta(
    age_header: &str,
    sealed: &str,
    owner_copy: &str,
) -> Result<NewSealedMeta> {
    use base64::Engine as _;
    let decode = |field: &str, v: &str, max: usize| -> Result<Vec<u8>> {
        let bad = || {
            Error::Invalid(format!(
                "metadata.{field} must be base64 of at most {max} characters"
            ))
        };
        if v.is_empty() || v.len() > max {
            return Err(bad());
        }
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| bad())
    };
    let header = decode("age_header", age_header, MAX_HEADER_B64)?;
    if !header.starts_with(b"age-encryption.org/v1\n") {
        return Err(Error::Invalid(
            "metadata.age_header is not an age header".into(),
        ));
    }
    if decode("sealed", sealed, MAX_SEALED_B64)?.len() < 16 {
        return Err(Error::Invalid(
            "metadata.sealed is too short to be sealed".into(),
        ));
    }
    // A client without the owner's account key (no vault) sends no owner copy.
    if !owner_copy.is_empty()
        && !decode("owner_copy", owner_copy, MAX_OWNER_COPY_B64)?
            .starts_with(b"age-encryption.org/v1\n")
    {
        return Err(Error::Invalid(
            "metadata.owner_copy is not an age file".into(),
        ));
    }
    Ok(NewSealedMeta {
        public: SealedMeta {
            meta_header: age_header.to_owned(),
            meta_sealed: sealed.to_owned(),
        },
        owner_copy: owner_copy.to_owned(),
    })
}

/// A positive total download cap that fits the database.
pub fn parse_max_downloads(m: Option<u64>) -> Result<Option<i64>> {
    match m {
        None => Ok(None),
        Some(m) if m == 0 || m > i64::MAX as u64 => {
            Err(Error::Invalid("max_downloads must be positive".into()))
        }
        Some(m) => Ok(Some(m as i64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_spelling() {
        for s in FileStatus::ALL {
            assert_eq!(FileStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(FileStatus::parse("Uploaded"), None);
        assert_eq!(
            FileStatus::ALL.iter().filter(|s| s.is_live()).count(),
            2,
            "only pending and uploaded hold quota"
        );
    }

    #[test]
    fn media_types_follow_rfc_6838() {
        assert_eq!(
            parse_mime_type(Some("Text/Plain")).unwrap().as_deref(),
            Some("text/plain")
        );
        for bad in [
            "text",
            "/plain",
            "text/",
            "te xt/plain",
            "text/plain; charset=x",
        ] {
            assert!(parse_mime_type(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_mime_type(Some(&format!("a/{}", "b".repeat(300)))).is_err());
    }

    #[test]
    fn prefixes_are_safe_inside_like() {
        assert_eq!(parse_id_prefix(Some(" AB-12 ")).unwrap(), "ab-12");
        for bad in [
            None,
            Some(""),
            Some("%"),
            Some("_"),
            Some(&"a".repeat(37)[..]),
        ] {
            assert!(parse_id_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_hashes_and_caps_are_checked() {
        assert_eq!(parse_file_name("  a.txt ").unwrap(), "a.txt");
        assert!(parse_file_name("a\nb").is_err());
        assert!(parse_file_name(&"x".repeat(256)).is_err());
        assert_eq!(
            parse_digest(Some(&"A".repeat(64)), None).unwrap(),
            Some(PlainDigest::Sha256("a".repeat(64)))
        );
        assert!(parse_digest(Some(&"g".repeat(64)), None).is_err());
        assert_eq!(
            parse_digest(Some(""), Some(&"b".repeat(64))).unwrap(),
            Some(PlainDigest::Keyed("b".repeat(64)))
        );
        assert!(parse_digest(None, Some("abc")).is_err());
        assert!(parse_digest(Some(&"a".repeat(64)), Some(&"b".repeat(64))).is_err());
        assert_eq!(parse_digest(None, Some("")).unwrap(), None);
        assert_eq!(parse_max_downloads(Some(0)).ok(), None);
        assert_eq!(parse_max_downloads(Some(3)).unwrap(), Some(3));
    }
}
