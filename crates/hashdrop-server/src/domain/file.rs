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

/// A SHA-256 in hex, lowercased.
pub fn parse_plaintext_hash(h: &str) -> Result<String> {
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(
            "plaintext_hash must be 64 hex characters".into(),
        ))
    }
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
        assert!(parse_plaintext_hash(&"A".repeat(64)).is_ok());
        assert!(parse_plaintext_hash(&"g".repeat(64)).is_err());
        assert_eq!(parse_max_downloads(Some(0)).ok(), None);
        assert_eq!(parse_max_downloads(Some(3)).unwrap(), Some(3));
    }
}
