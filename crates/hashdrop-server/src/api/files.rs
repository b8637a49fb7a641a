//! File records: presign (atomic quota reservation), complete, listing, lookup, delete.
//!
//! Quotas are reserved and released through [`crate::quota`].

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use hashdrop_wire::{
    CompleteRequest, CompleteResponse, FileDetails, FileHash, FileMatch, FileSummary, KeyMode,
    PresignRequest, PresignResponse, UploadResource,
};
use serde::Deserialize;

use super::auth::{ApiJson, AuthUser};
use crate::db::{now_ms, parse_rfc3339, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::jobs;
use crate::state::AppState;

/// `?id=` query.
#[derive(Debug, Deserialize)]
pub struct IdQuery {
    id: Option<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A full UUID in canonical lowercase form, or 400.
pub fn parse_file_id(s: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.to_string())
        .map_err(|_| ApiError::BadRequest("invalid file id".into()))
}

/// A file id prefix: 1..=36 chars of hex and dashes (so it is safe inside LIKE).
fn parse_prefix(q: &IdQuery) -> ApiResult<String> {
    let p =
        q.id.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::BadRequest("missing id query parameter".into()))?
            .to_ascii_lowercase();
    if p.len() > 36 || !p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ApiError::BadRequest("invalid file id prefix".into()));
    }
    Ok(p)
}

fn exact_id(q: &IdQuery) -> ApiResult<String> {
    let s =
        q.id.as_deref()
            .ok_or_else(|| ApiError::BadRequest("missing id query parameter".into()))?;
    parse_file_id(s)
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
/// stored and may be shown, so anything else is a 400 before anything is written.
fn parse_mime_type(m: Option<&str>) -> ApiResult<Option<String>> {
    let Some(m) = m else { return Ok(None) };
    let valid = m.len() <= 255
        && m.split_once('/')
            .is_some_and(|(t, sub)| is_restricted_name(t) && is_restricted_name(sub));
    if !valid {
        return Err(ApiError::BadRequest(
            "mime_type must be a type/subtype media type of at most 255 characters".into(),
        ));
    }
    Ok(Some(m.to_ascii_lowercase()))
}

/// `POST /api/files/presign`.
pub async fn presign(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<PresignRequest>,
) -> ApiResult<Json<PresignResponse>> {
    let limits = &state.cfg.limits;
    let name = req.file_name.trim();
    if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "file_name must be 1 to 255 printable characters".into(),
        ));
    }
    let mime_type = parse_mime_type(req.mime_type.as_deref())?;
    // An empty stored hash means "not known yet": complete must then supply it.
    let plaintext_hash = match &req.plaintext_hash {
        Some(h) if is_hex64(h) => h.to_ascii_lowercase(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "plaintext_hash must be 64 hex characters".into(),
            ))
        }
        None => String::new(),
    };
    if req.encrypted_size_bytes == 0 {
        return Err(ApiError::BadRequest(
            "encrypted_size_bytes must be positive".into(),
        ));
    }
    if req.encrypted_size_bytes > limits.file_max_bytes {
        return Err(ApiError::TooLarge("file exceeds the per-file size limit"));
    }
    let now = now_ms();
    let expires_at = match &req.expires_at {
        Some(s) => {
            let t = parse_rfc3339(s)
                .ok_or_else(|| ApiError::BadRequest("expires_at must be RFC 3339".into()))?;
            if t <= now {
                return Err(ApiError::BadRequest("expires_at is in the past".into()));
            }
            Some(t)
        }
        None => None,
    };
    if req.max_downloads == Some(0) || req.max_downloads.is_some_and(|m| m > i64::MAX as u64) {
        return Err(ApiError::BadRequest(
            "max_downloads must be positive".into(),
        ));
    }
    let size = req.encrypted_size_bytes as i64;
    let file_id = uuid::Uuid::new_v4().to_string();
    let object_key = format!("{}/{}", state.keys.user_hash(&user_id), file_id);

    // No quota reserved and no `pending` row for an upload that cannot happen now.
    state
        .blobs
        .available()
        .await
        .map_err(crate::blob::api_error)?;
    let mut tx = state.db.begin().await?;
    crate::quota::reserve(&mut tx, &user_id, size, limits, now).await?;
    sqlx::query(
        "INSERT INTO files (id, user_id, object_key, file_name, mime_type, plaintext_hash, \
         encrypted_size, key_mode, status, expires_at, max_downloads, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11)",
    )
    .bind(&file_id)
    .bind(&user_id)
    .bind(&object_key)
    .bind(name)
    .bind(mime_type.as_deref())
    .bind(&plaintext_hash)
    .bind(size)
    .bind(req.key_management_mode.as_str())
    .bind(expires_at)
    .bind(req.max_downloads.map(|m| m as i64))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("hashdrop_presigns_total").increment(1);

    let (url, url_expires) = state.blobs.presign_put(
        &object_key,
        req.encrypted_size_bytes,
        Duration::from_secs(limits.upload_url_ttl_secs),
    );
    Ok(Json(PresignResponse {
        file_id,
        object_key,
        upload_resource: UploadResource {
            url,
            method: "PUT".into(),
            expires_at: rfc3339(url_expires),
        },
    }))
}

/// Turns a file `pending`/`uploaded` → `status` (`failed` or `deleted`), releases its
/// quota and enqueues deletion of its object, all in one transaction. Returns false
/// if the file was not live (someone else got there first).
pub async fn retire_file(state: &AppState, file_id: &str, status: &str) -> anyhow::Result<bool> {
    let mut tx = state.db.begin().await?;
    crate::quota::lock_global(&mut tx).await?;
    // The conditional UPDATE is the transition; only the request it returned the row
    // to releases the quota.
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "UPDATE files SET status = $1, updated_at = $2 \
         WHERE id = $3 AND status IN ('pending', 'uploaded') \
         RETURNING user_id, object_key, encrypted_size",
    )
    .bind(status)
    .bind(now_ms())
    .bind(file_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, key, size)) = row else {
        return Ok(false);
    };
    crate::quota::release(&mut tx, &user_id, size).await?;
    jobs::enqueue_blob_delete(&mut tx, &key, state.cfg.jobs.max_attempts).await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    state.cache.invalidate(&[file_id.to_string()]).await;
    Ok(true)
}

/// Marks a stale pending upload failed (cleaner).
pub async fn fail_pending(state: &AppState, file_id: &str) -> anyhow::Result<bool> {
    retire_file(state, file_id, "failed").await
}

/// `POST /api/files/complete`: measures the stored object; a missing object is 400,
/// one whose size differs from the declared size is deleted and the upload failed.
pub async fn complete(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<Json<CompleteResponse>> {
    let file_id = parse_file_id(&req.file_id)?;
    let row: Option<(String, String, i64, String)> = sqlx::query_as(
        "SELECT object_key, status, encrypted_size, plaintext_hash FROM files WHERE id = $1 AND user_id = $2",
    )
    .bind(&file_id)
    .bind(&user_id)
    .fetch_optional(state.db.pool())
    .await?;
    let Some((key, status, declared, hash)) = row else {
        return Err(ApiError::NotFound("file not found"));
    };
    let given = req.plaintext_hash.as_deref().filter(|h| !h.is_empty());
    if let Some(h) = given {
        if !hash.is_empty() && !h.eq_ignore_ascii_case(&hash) {
            return Err(ApiError::BadRequest(
                "plaintext_hash differs from the one given at presign".into(),
            ));
        }
    }
    match status.as_str() {
        "uploaded" => {
            return Ok(Json(CompleteResponse {
                s3_object_key: key,
                uploaded_file_size: declared as u64,
            }))
        }
        "pending" => {}
        _ => return Err(ApiError::NotFound("file not found")),
    }
    // A client that hashed while uploading sends the hash only now.
    let hash = match given {
        _ if !hash.is_empty() => hash,
        Some(h) if is_hex64(h) => h.to_ascii_lowercase(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "plaintext_hash must be 64 hex characters".into(),
            ))
        }
        None => {
            return Err(ApiError::BadRequest(
                "plaintext_hash is required here because presign did not carry it".into(),
            ))
        }
    };
    // An unreachable store is a 503 and the file stays `pending`: the client may
    // retry complete, and the pending sweeper cleans up if it never does.
    let Some(stored) = state
        .blobs
        .size(&key)
        .await
        .map_err(crate::blob::api_error)?
    else {
        return Err(ApiError::BadRequest("object has not been uploaded".into()));
    };
    if stored != declared as u64 {
        retire_file(&state, &file_id, "failed").await?;
        return Err(if stored > state.cfg.limits.file_max_bytes {
            ApiError::TooLarge("uploaded object exceeds the size limit")
        } else {
            ApiError::BadRequest(
                "uploaded object size differs from encrypted_size_bytes; upload failed".into(),
            )
        });
    }
    let r = sqlx::query(
        "UPDATE files SET status = 'uploaded', plaintext_size = $1, updated_at = $2, \
         plaintext_hash = $5 WHERE id = $3 AND user_id = $4 AND status = 'pending'",
    )
    .bind(req.plaintext_size_bytes.unwrap_or(0).min(i64::MAX as u64) as i64)
    .bind(now_ms())
    .bind(&file_id)
    .bind(&user_id)
    .bind(&hash)
    .execute(state.db.pool())
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound("file not found"));
    }
    metrics::counter!("hashdrop_uploads_completed_total").increment(1);
    Ok(Json(CompleteResponse {
        s3_object_key: key,
        uploaded_file_size: stored,
    }))
}

type FileRow = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

const FILE_COLUMNS: &str = "id, file_name, status, plaintext_size, encrypted_size, object_key, \
     key_mode, plaintext_hash, expires_at, max_downloads, download_count, created_at";

fn key_mode(s: &str) -> KeyMode {
    KeyMode::parse(s).unwrap_or(KeyMode::Vault)
}

/// `GET /api/files/all`: the reference answers 404 when the user has no files. Reads
/// the replica (when configured): a file completed a moment ago may be missing for
/// the replication lag.
pub async fn list_all(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> ApiResult<Json<Vec<FileSummary>>> {
    let rows: Vec<(String, String, i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, file_name, encrypted_size, status, key_mode, created_at FROM files \
         WHERE user_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(&user_id)
    .fetch_all(state.db.read_pool())
    .await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("no files found"));
    }
    Ok(Json(
        rows.into_iter()
            .map(|(id, name, size, status, mode, created)| FileSummary {
                file_id: id,
                file_name: name,
                encrypted_size_bytes: size as u64,
                status,
                key_management_mode: key_mode(&mode),
                created_at: rfc3339(created),
            })
            .collect(),
    ))
}

/// The caller's files whose id starts with `?id=`; none is a 404. Read-only
/// endpoints only: it reads the replica when one is configured.
async fn matching(state: &AppState, user_id: &str, q: &IdQuery) -> ApiResult<Vec<FileRow>> {
    let prefix = parse_prefix(q)?;
    let rows = by_prefix(state.db.read_pool(), user_id, &prefix).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("no files match"));
    }
    Ok(rows)
}

async fn by_prefix(pool: &sqlx::AnyPool, user_id: &str, prefix: &str) -> ApiResult<Vec<FileRow>> {
    let sql = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND id LIKE $2 ORDER BY created_at DESC LIMIT 100"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(format!("{prefix}%"))
        .fetch_all(pool)
        .await?)
}

/// `GET /api/files/resolve?id=PREFIX`.
pub async fn resolve(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    Query(q): Query<IdQuery>,
) -> ApiResult<Json<Vec<FileMatch>>> {
    let rows = matching(&state, &user_id, &q).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| FileMatch {
                file_id: r.0,
                file_name: r.1,
            })
            .collect(),
    ))
}

/// Public download URL of a file.
pub fn download_url(state: &AppState, user_id: &str, file_id: &str) -> String {
    format!(
        "{}/files/download/{}/{}",
        state.public_url,
        state.keys.user_hash(user_id),
        file_id
    )
}

/// `GET /api/files?id=PREFIX`.
pub async fn details(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    Query(q): Query<IdQuery>,
) -> ApiResult<Json<Vec<FileDetails>>> {
    let rows = matching(&state, &user_id, &q).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| FileDetails {
                download_url: download_url(&state, &user_id, &r.0),
                share_url: format!("{}/d/{}", state.public_url, r.0),
                file_id: r.0,
                file_name: r.1,
                status: r.2,
                plaintext_size_bytes: r.3 as u64,
                encrypted_size_bytes: r.4 as u64,
                s3_key: r.5,
                key_management_mode: key_mode(&r.6),
                plaintext_hash: r.7,
                expires_at: r.8.map(rfc3339),
                max_downloads: r.9.map(|m| m as u64),
                download_count: r.10 as u64,
            })
            .collect(),
    ))
}

/// `GET /api/files/hash?id=UUID`.
pub async fn hash(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    Query(q): Query<IdQuery>,
) -> ApiResult<Json<FileHash>> {
    let id = exact_id(&q)?;
    let row: Option<(String,)> =
        sqlx::query_as("SELECT plaintext_hash FROM files WHERE id = $1 AND user_id = $2")
            .bind(&id)
            .bind(&user_id)
            .fetch_optional(state.db.read_pool())
            .await?;
    row.map(|(hash,)| Json(FileHash { hash }))
        .ok_or(ApiError::NotFound("file not found"))
}

/// `GET /api/files/salt?id=UUID`: kept for reference clients. age passphrase files
/// carry their scrypt salt in the header, so there is never a salt to return.
pub async fn salt(
    State(_state): State<AppState>,
    AuthUser(_user_id): AuthUser,
    Query(q): Query<IdQuery>,
) -> ApiResult<StatusCode> {
    exact_id(&q)?;
    Err(ApiError::NotFound(
        "no passphrase salt stored: age files keep it in their header",
    ))
}

/// `DELETE /api/files?id=PREFIX`: refuses an ambiguous prefix with 409.
pub async fn delete_file(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    Query(q): Query<IdQuery>,
) -> ApiResult<StatusCode> {
    let prefix = parse_prefix(&q)?;
    // The primary: deleting a file uploaded a moment ago must find it.
    let rows = by_prefix(state.db.pool(), &user_id, &prefix).await?;
    let id = match rows.as_slice() {
        [] => return Err(ApiError::NotFound("file not found")),
        [one] => one.0.clone(),
        _ => return Err(ApiError::Conflict("id prefix matches several files")),
    };
    let mut tx = state.db.begin().await?;
    crate::quota::lock_global(&mut tx).await?;
    // The DELETE is the transition: of parallel deletes of one file only the one it
    // returns the row to releases the quota; the others find nothing (404).
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "DELETE FROM files WHERE id = $1 AND user_id = $2 \
         RETURNING status, object_key, encrypted_size",
    )
    .bind(&id)
    .bind(&user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, key, size)) = row else {
        return Err(ApiError::NotFound("file not found"));
    };
    if status == "pending" || status == "uploaded" {
        crate::quota::release(&mut tx, &user_id, size).await?;
    }
    jobs::enqueue_blob_delete(&mut tx, &key, state.cfg.jobs.max_attempts).await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    state.cache.invalidate(&[id]).await;
    Ok(StatusCode::NO_CONTENT)
}
