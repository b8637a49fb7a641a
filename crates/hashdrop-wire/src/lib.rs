//! Wire types of the Hashdrop HTTP API, shared by `hashdrop-server` and the `hashdrop`
//! CLI. Free of any HTTP, database or runtime dependency on purpose.
//!
//! Paths and JSON field names follow the reference Go server (`anxhukumar/hashdrop`,
//! `docs/api.md`) so existing clients keep working; additions are marked as such.
//! Identifiers are UUID strings and timestamps RFC 3339 strings (UTC), kept as `String`
//! here so this crate needs neither `uuid` nor `time`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// The error body every failing API call returns, e.g.
/// `{"error": "invalid email or password", "code": "invalid_credentials"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Human-readable explanation.
    pub error: String,
    /// Stable machine-readable code.
    pub code: String,
}

/// How a file's age key is managed.
///
/// Serialised as `"vault"` (a fresh X25519 identity per file, kept in the local vault)
/// or `"passphrase"` (age scrypt recipient; the salt lives in the age header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// Key kept in the owner's local vault and shared in the link fragment.
    Vault,
    /// File encrypted with a passphrase only.
    Passphrase,
}

impl KeyMode {
    /// The wire/database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Vault => "vault",
            KeyMode::Passphrase => "passphrase",
        }
    }

    /// Parses the wire/database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vault" => Some(KeyMode::Vault),
            "passphrase" => Some(KeyMode::Passphrase),
            _ => None,
        }
    }
}

/// `POST /api/user/register`, `POST /api/user/login` and `DELETE /api/user` body:
/// `{"email": "user@example.com", "password": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// Account email.
    pub email: String,
    /// Account password (8..=128 characters).
    pub password: String,
}

/// `201 Created` answer of `POST /api/user/register`:
/// `{"id": "uuid", "created_at": "...", "updated_at": "...", "email": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserResponse {
    /// User id (UUID).
    pub id: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 last update time.
    pub updated_at: String,
    /// Account email.
    pub email: String,
}

/// `PATCH /api/user/verify` body: `{"email": "...", "otp": "123456"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyRequest {
    /// Account email.
    pub email: String,
    /// The 6-digit one-time code from the verification mail.
    pub otp: String,
}

/// `200 OK` answer of `POST /api/user/login`:
/// `{"access_token": "eyJ...", "refresh_token": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// JWT access token (15 minutes), sent as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Opaque refresh token (30 days, single use).
    pub refresh_token: String,
}

/// `POST /api/token/refresh` and `POST /api/token/revoke` body:
/// `{"refresh_token": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token to use or revoke.
    pub refresh_token: String,
}

/// `200 OK` answer of `POST /api/token/refresh`:
/// `{"access_token": "...", "refresh_token": "..."}`.
///
/// Addition to the reference: refresh tokens rotate on every use, so the answer
/// carries the replacement; the token sent is dead from now on and presenting it
/// again revokes every session of the account (reuse detection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshResponse {
    /// New access token.
    pub access_token: String,
    /// Replacement refresh token.
    pub refresh_token: String,
}

/// `POST /api/files/presign` body:
///
/// ```json
/// {"file_name": "report.pdf", "plaintext_hash": "<64 hex>", "encrypted_size_bytes": 1234,
///  "key_management_mode": "vault", "expires_at": "2030-01-01T00:00:00Z", "max_downloads": 10}
/// ```
///
/// `expires_at` and `max_downloads` are optional owner settings for sharing.
/// `plaintext_hash` is optional here: a client that hashes while it encrypts and
/// uploads (one read of the file, as the `hashdrop` CLI does) sends it to complete
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresignRequest {
    /// Display name in clear, as older clients send it; empty when `metadata` carries
    /// the name sealed (exactly one of the two).
    #[serde(default)]
    pub file_name: String,
    /// Addition: the name and media type sealed on the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SealedMetadata>,
    /// SHA-256 of the plaintext, lowercase hex, as older clients send it; if neither
    /// digest is here, complete must carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_hash: Option<String>,
    /// Addition: the keyed BLAKE3 digest of the plaintext (lowercase hex,
    /// `docs/FORMAT.md`), which only key holders can compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_digest: Option<String>,
    /// Exact size of the age ciphertext that will be uploaded.
    pub encrypted_size_bytes: u64,
    /// `"vault"` or `"passphrase"`.
    pub key_management_mode: KeyMode,
    /// Optional MIME type in clear (older clients; new ones seal it in `metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Optional RFC 3339 time after which downloads are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Optional cap on the total number of downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u64>,
    /// Addition: upload the object in parts (a multipart upload), cut as described;
    /// absent for one PUT of the whole object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartPlan>,
}

/// How a multipart upload's object is cut: part 1 is `first_part_bytes`, every later
/// part `part_bytes`, the last one whatever remains (at most `part_bytes`). Every part
/// but the last is at least [`MIN_PART_BYTES`], none above [`MAX_PART_BYTES`]; there are
/// at most [`MAX_PARTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartPlan {
    /// Ciphertext bytes of part 1 (the age header and the first STREAM chunks).
    pub first_part_bytes: u64,
    /// Ciphertext bytes of each later part but the last.
    pub part_bytes: u64,
}

/// Smallest part but the last of a multipart upload (S3's limit).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// Most parts of one multipart upload (S3's limit).
pub const MAX_PARTS: u64 = 10_000;
/// Largest part of a multipart upload (S3's limit).
pub const MAX_PART_BYTES: u64 = 5 << 30;

impl PartPlan {
    /// Number of parts of an object of `size` bytes, `None` if the plan does not fit
    /// it (a part below the minimum, too many parts, a zero size).
    pub fn part_count(&self, size: u64) -> Option<u64> {
        if size == 0 || self.first_part_bytes == 0 || self.part_bytes == 0 {
            return None;
        }
        if self.first_part_bytes > MAX_PART_BYTES || self.part_bytes > MAX_PART_BYTES {
            return None;
        }
        let rest = size.saturating_sub(self.first_part_bytes);
        let count = 1 + rest.div_ceil(self.part_bytes);
        let mins_hold = count == 1
            || (self.first_part_bytes >= MIN_PART_BYTES
                && (count == 2 || self.part_bytes >= MIN_PART_BYTES));
        (mins_hold && count <= MAX_PARTS && self.first_part_bytes <= size).then_some(count)
    }

    /// Where part `number` (1-based) starts in an object of `size` bytes, `None` when
    /// the object has no such part.
    pub fn part_offset(&self, size: u64, number: u64) -> Option<u64> {
        self.part_len(size, number)?;
        Some(match number {
            1 => 0,
            n => self.first_part_bytes + (n - 2) * self.part_bytes,
        })
    }

    /// Bytes of part `number` (1-based) of an object of `size` bytes, `None` when the
    /// object has no such part.
    pub fn part_len(&self, size: u64, number: u64) -> Option<u64> {
        let count = self.part_count(size)?;
        match number {
            0 => None,
            1 => Some(self.first_part_bytes.min(size)),
            n if n <= count => {
                let start = self.first_part_bytes + (n - 2) * self.part_bytes;
                Some(self.part_bytes.min(size - start))
            }
            _ => None,
        }
    }
}

/// Where and how to upload: `{"url": "...", "method": "PUT", "expires_at": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadResource {
    /// Signed, expiring URL accepting exactly one object.
    pub url: String,
    /// HTTP method to use (always `PUT`).
    pub method: String,
    /// RFC 3339 time at which the URL stops working.
    pub expires_at: String,
}

/// `200 OK` answer of `POST /api/files/presign`:
/// `{"file_id": "uuid", "object_key": "usrh-.../uuid", "upload_resource": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresignResponse {
    /// New file id (UUID).
    pub file_id: String,
    /// Object key in the blob store.
    pub object_key: String,
    /// Upload instructions for one PUT of the whole object; absent for a multipart
    /// upload, whose part URLs come from `POST /api/files/parts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_resource: Option<UploadResource>,
    /// Addition: for a multipart upload, how many parts the object has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_count: Option<u64>,
}

/// `POST /api/files/parts` body: signed URLs for these parts (1-based numbers) of a
/// `pending` multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrlsRequest {
    /// File id from presign.
    pub file_id: String,
    /// Which parts; at most 1000 per request.
    pub part_numbers: Vec<u64>,
}

/// One part's upload instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrl {
    /// 1-based part number.
    pub part_number: u64,
    /// Exact length the part must have: the store refuses any other.
    pub size_bytes: u64,
    /// Signed, expiring URL accepting this part.
    pub url: String,
    /// HTTP method to use (always `PUT`).
    pub method: String,
    /// RFC 3339 time at which the URL stops working.
    pub expires_at: String,
}

/// `200 OK` answer of `POST /api/files/parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartUrlsResponse {
    /// One entry per part asked for, in the order asked.
    pub parts: Vec<PartUrl>,
}

/// One part the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredPart {
    /// 1-based part number.
    pub part_number: u64,
    /// Its stored length.
    pub size_bytes: u64,
}

/// `200 OK` answer of `GET /api/files/parts?id=`: the parts of a `pending` multipart
/// upload that the store holds, by number, so a resumed upload sends only the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredParts {
    /// Number of parts the object has.
    pub part_count: u64,
    /// The parts received, ascending.
    pub parts: Vec<StoredPart>,
}

/// `POST /api/files/complete` body: `{"file_id": "uuid", "plaintext_size_bytes": 1000}`.
///
/// `plaintext_hash` is required here when presign did not carry it; otherwise it may be
/// repeated (reference compatibility) and must equal presign's. `passphrase_salt` is
/// accepted and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteRequest {
    /// File id from presign.
    pub file_id: String,
    /// Plaintext SHA-256 (hex): required if presign had no digest and
    /// `keyed_digest` is absent, else checked against presign's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_hash: Option<String>,
    /// Addition: the keyed digest (hex), the same rules as `plaintext_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_digest: Option<String>,
    /// Optional plaintext size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_size_bytes: Option<u64>,
    /// Ignored; age keeps the scrypt salt in the file header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_salt: Option<String>,
}

/// `200 OK` answer of `POST /api/files/complete`:
/// `{"s3_object_key": "usrh-.../uuid", "uploaded_file_size": 1234}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteResponse {
    /// Object key in the blob store.
    pub s3_object_key: String,
    /// Size of the stored object as measured by the server.
    pub uploaded_file_size: u64,
}

/// One element of `GET /api/files/all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileSummary {
    /// File id (UUID).
    pub file_id: String,
    /// Display name in clear (empty when `metadata` carries it).
    pub file_name: String,
    /// Addition: the sealed name and media type, with the owner's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SealedMetadata>,
    /// Ciphertext size.
    pub encrypted_size_bytes: u64,
    /// `pending`, `uploaded`, `failed` or `deleted`.
    pub status: String,
    /// `"vault"` or `"passphrase"`.
    pub key_management_mode: KeyMode,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// One element of `GET /api/files/resolve?id=PREFIX`: `{"file_name": "...", "file_id": "uuid"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileMatch {
    /// Display name in clear (empty when `metadata` carries it).
    pub file_name: String,
    /// Addition: the sealed name and media type, with the owner's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SealedMetadata>,
    /// Full file id.
    pub file_id: String,
}

/// One element of `GET /api/files?id=PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileDetails {
    /// File id (UUID).
    pub file_id: String,
    /// Display name in clear (empty when `metadata` carries it).
    pub file_name: String,
    /// Addition: the sealed name and media type, with the owner's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SealedMetadata>,
    /// `pending`, `uploaded`, `failed` or `deleted`.
    pub status: String,
    /// Plaintext size given at complete (0 if unknown).
    pub plaintext_size_bytes: u64,
    /// Ciphertext size.
    pub encrypted_size_bytes: u64,
    /// Object key in the blob store.
    pub s3_key: String,
    /// `"vault"` or `"passphrase"`.
    pub key_management_mode: KeyMode,
    /// Plaintext SHA-256, hex (empty for uploads that recorded a keyed digest).
    pub plaintext_hash: String,
    /// Addition: the keyed digest, hex, for uploads that recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_digest: Option<String>,
    /// Addition: RFC 3339 expiry set by the owner, if any.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Addition: total download cap set by the owner, if any.
    #[serde(default)]
    pub max_downloads: Option<u64>,
    /// Addition: downloads counted so far.
    #[serde(default)]
    pub download_count: u64,
    /// Addition: public download URL (`/files/download/{user_hash}/{file_id}`).
    #[serde(default)]
    pub download_url: String,
    /// Addition: share page URL without key fragment (`/d/{file_id}`).
    #[serde(default)]
    pub share_url: String,
}

/// `200 OK` answer of `GET /api/files/hash?id=UUID`: `{"hash": "<64 hex>"}`, for
/// uploads that recorded a plaintext SHA-256 (older clients); any other file answers
/// 409, and its keyed digest is in the file's details and its share info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileHash {
    /// Plaintext SHA-256, lowercase hex.
    pub hash: String,
}

/// Answer of `GET /api/files/salt?id=UUID` in the reference (`{"salt": "hex"}`).
/// This server always answers 404 because age stores the salt in the file header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassphraseSalt {
    /// Hex salt.
    pub salt: String,
}

/// `200 OK` answer of `GET /api/share/{file_id}` (addition): what a recipient needs,
/// nothing about the owner.
///
/// ```json
/// {"file_id": "uuid", "file_name": "report.pdf", "encrypted_size_bytes": 1234,
///  "key_management_mode": "vault", "expires_at": null,
///  "download_url": "http://127.0.0.1:8080/files/download/usrh-.../uuid"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareInfo {
    /// File id (UUID).
    pub file_id: String,
    /// Display name in clear (empty when `metadata` carries it).
    pub file_name: String,
    /// Addition: the sealed name and media type (never the owner's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SealedMetadata>,
    /// Addition: the keyed digest (hex) the upload recorded, which `--verify`
    /// recomputes while decrypting; useless to anyone without the file key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed_digest: Option<String>,
    /// Ciphertext size.
    pub encrypted_size_bytes: u64,
    /// `"vault"` or `"passphrase"`.
    pub key_management_mode: KeyMode,
    /// RFC 3339 expiry, if the owner set one.
    pub expires_at: Option<String>,
    /// Downloads left under the owner's total cap; absent when there is none.
    /// (Addition; the daily per-file limit is separate and answers 429.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads_left: Option<u64>,
    /// Public download URL answering 303 to a signed blob URL.
    pub download_url: String,
}

/// The server's default largest object, which the CLI also checks before it uploads:
/// a 2 GiB file as age writes it (16 bytes of tag per 64 KiB chunk, 512 KiB in all, and
/// a header of a few hundred bytes) fits with room to spare, so a new user can upload
/// 2 GiB with no configuration.
pub const DEFAULT_FILE_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024 + 1024 * 1024;

/// A file's name and media type sealed on the client (addition; `docs/FORMAT.md`).
///
/// The server stores these strings and hands them back; it cannot open them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealedMetadata {
    /// Base64 of the file's age header (the bytes its object starts with): with the
    /// link's key or the passphrase it gives the file key, hence the key of `sealed`,
    /// before a byte of the object is downloaded.
    pub age_header: String,
    /// Base64 of the [`FileMetadata`] JSON sealed with ChaCha20-Poly1305 under
    /// `HKDF-SHA-256(file key, info = "hashdrop.metadata.v1")`.
    pub sealed: String,
    /// Base64 of an age file to the owner's account key holding the same JSON, so
    /// the owner's listing opens every name with the vault alone. Owner answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_copy: Option<String>,
}

/// What [`SealedMetadata`] holds: `{"name": "report.pdf", "type": "application/pdf"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// The file's name.
    pub name: String,
    /// Its media type, if known.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

/// `200 OK` answer of `GET /api/cli/version`: `{"compatible_version": "0.1.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CliVersion {
    /// CLI version this server is compatible with.
    pub compatible_version: String,
}

/// Answer of `GET /api/readyz` (addition): `200` while the instance can serve
/// (`status` `ready`, or `degraded` when an optional dependency such as Redis is
/// down and the instance serves without it), `503` (`not_ready`) when the database
/// or blob store fails or while draining.
///
/// ```json
/// {"status": "ready", "draining": false,
///  "checks": {"database": "ok", "replica": "disabled", "blob_store": "ok", "cache": "disabled",
///             "rate_limit": "ok"}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ready`, `degraded` (serving, but a dependency every instance shares, such as
    /// an S3 store, Redis or the read replica, fails) or `not_ready`.
    pub status: String,
    /// True once shutdown has begun.
    pub draining: bool,
    /// Per-dependency results.
    pub checks: ReadinessChecks,
}

/// Per-dependency readiness results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadinessChecks {
    /// Round trip to the primary database: `ok` or `error`.
    pub database: String,
    /// Read replica: `ok`, `degraded` (unreachable; its reads go to the primary) or
    /// `disabled` (none configured). Empty from older servers.
    #[serde(default)]
    pub replica: String,
    /// Blob store reachable and writable: `ok` or `error`.
    pub blob_store: String,
    /// Shared file cache: `ok`, `degraded` (Redis unreachable; lookups go to the
    /// database) or `disabled` (no cache configured). Empty from older servers.
    #[serde(default)]
    pub cache: String,
    /// Rate limits: `ok` (in-process, or Redis answering), `degraded` (Redis
    /// unreachable; each instance enforces the limits on its own) or `disabled`.
    /// Empty from older servers.
    #[serde(default)]
    pub rate_limit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_mode_spelling() {
        assert_eq!(serde_json::to_string(&KeyMode::Vault).unwrap(), "\"vault\"");
        let m: KeyMode = serde_json::from_str("\"passphrase\"").unwrap();
        assert_eq!(m, KeyMode::Passphrase);
        assert!(serde_json::from_str::<KeyMode>("\"other\"").is_err());
        assert_eq!(
            KeyMode::parse(KeyMode::Vault.as_str()),
            Some(KeyMode::Vault)
        );
    }

    #[test]
    fn presign_optional_fields_default() {
        let r: PresignRequest = serde_json::from_str(
            r#"{"file_name":"a","plaintext_hash":"00","encrypted_size_bytes":5,"key_management_mode":"vault"}"#,
        )
        .unwrap();
        assert_eq!(r.expires_at, None);
        assert_eq!(r.max_downloads, None);
        assert_eq!(r.plaintext_hash.as_deref(), Some("00"));
        let r: PresignRequest = serde_json::from_str(
            r#"{"file_name":"a","encrypted_size_bytes":5,"key_management_mode":"vault"}"#,
        )
        .unwrap();
        assert_eq!(r.plaintext_hash, None);
    }

    #[test]
    fn a_part_plan_cuts_the_object_into_contiguous_parts() {
        let plan = PartPlan {
            first_part_bytes: MIN_PART_BYTES + 1000,
            part_bytes: MIN_PART_BYTES,
        };
        let size = 2 * MIN_PART_BYTES + 1000 + 123;
        assert_eq!(plan.part_count(size), Some(3));
        let parts: Vec<_> = (1..=3)
            .map(|n| {
                (
                    plan.part_offset(size, n).unwrap(),
                    plan.part_len(size, n).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (0, MIN_PART_BYTES + 1000),
                (MIN_PART_BYTES + 1000, MIN_PART_BYTES),
                (2 * MIN_PART_BYTES + 1000, 123)
            ]
        );
        // No part 0, none past the end; an object smaller than part 1 is one part.
        assert_eq!(plan.part_len(size, 0), None);
        assert_eq!(plan.part_len(size, 4), None);
        assert_eq!(plan.part_offset(size, 4), None);
        assert_eq!(plan.part_count(100), None, "part 1 larger than the object");
    }

    #[test]
    fn part_plans_outside_the_store_limits_are_refused() {
        let small = PartPlan {
            first_part_bytes: MIN_PART_BYTES - 1,
            part_bytes: MIN_PART_BYTES,
        };
        assert_eq!(
            small.part_count(3 * MIN_PART_BYTES),
            None,
            "part 1 below 5 MiB"
        );
        let small_middle = PartPlan {
            first_part_bytes: MIN_PART_BYTES,
            part_bytes: MIN_PART_BYTES - 1,
        };
        assert_eq!(small_middle.part_count(4 * MIN_PART_BYTES), None);
        // Two parts: only part 1 has a minimum.
        assert_eq!(small_middle.part_count(MIN_PART_BYTES + 10), Some(2));
        let zero = PartPlan {
            first_part_bytes: 0,
            part_bytes: 0,
        };
        assert_eq!(zero.part_count(10), None);
        let too_many = PartPlan {
            first_part_bytes: MIN_PART_BYTES,
            part_bytes: MIN_PART_BYTES,
        };
        assert_eq!(
            too_many.part_count(MAX_PARTS * MIN_PART_BYTES),
            Some(MAX_PARTS)
        );
        assert_eq!(too_many.part_count(MAX_PARTS * MIN_PART_BYTES + 1), None);
        assert_eq!(too_many.part_count(u64::MAX), None, "no overflow");
        let huge = PartPlan {
            first_part_bytes: MIN_PART_BYTES,
            part_bytes: u64::MAX,
        };
        assert_eq!(
            huge.part_count(3 * MIN_PART_BYTES),
            None,
            "a part above 5 GiB"
        );
    }
}
