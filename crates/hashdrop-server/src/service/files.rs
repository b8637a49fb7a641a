//! A file's life as its owner drives it: presign (reserve quota, `pending` row,
//! signed upload URL), complete (measure the object, `uploaded`), look up, and the
//! one way a life ends ([`end_in`]) shared by expiry, failure, the owner's delete,
//! account deletion and the dev reset.

use std::time::Duration;

use hashdrop_wire::{CompleteRequest, PresignRequest};

use crate::domain::file::{self, Ending, FileStatus};
use crate::domain::job::Job;
use crate::domain::time::{now_ms, parse_rfc3339};
use crate::domain::{error::FILE_NOT_FOUND, Error, Result};
use crate::infra::blob::store_error;
use crate::state::AppState;
use crate::store::files::{self as rows, Details, Freshness, NewFile};
use crate::store::quota::{self, QuotaLimits};
use crate::store::{jobs, Tx};

/// A reserved upload slot.
#[derive(Debug)]
pub struct Presigned {
    /// The new file's id.
    pub file_id: String,
    /// Where its object goes.
    pub object_key: String,
    /// The signed upload URL.
    pub url: String,
    /// When the URL stops working (unix ms).
    pub url_expires_at: i64,
}

/// Checks the request, reserves quota and creates the `pending` row in one
/// transaction, then signs an upload URL for exactly the declared size.
pub async fn presign(state: &AppState, user_id: &str, req: &PresignRequest) -> Result<Presigned> {
    let limits = &state.cfg.limits;
    // A name in clear (older clients) or sealed (new ones), never both: a client
    // that seals must not leak what it seals.
    let (file_name, mime_type, meta) = match &req.metadata {
        None => (
            file::parse_file_name(&req.file_name)?,
            file::parse_mime_type(req.mime_type.as_deref())?,
            None,
        ),
        Some(m) => {
            if !req.file_name.is_empty() || req.mime_type.is_some() {
                return Err(Error::Invalid(
                    "file_name and mime_type must be absent when metadata seals them".into(),
                ));
            }
            let owner_copy = m.owner_copy.as_deref().unwrap_or_default();
            let meta = file::parse_sealed_meta(&m.age_header, &m.sealed, owner_copy)?;
            ("", None, Some(meta))
        }
    };
    // No digest yet means "complete will carry it".
    let digest = file::parse_digest(req.plaintext_hash.as_deref(), req.keyed_digest.as_deref())?;
    if req.encrypted_size_bytes == 0 {
        return Err(Error::Invalid(
            "encrypted_size_bytes must be positive".into(),
        ));
    }
    if req.encrypted_size_bytes > limits.file_max_bytes {
        return Err(Error::TooLarge("file exceeds the per-file size limit"));
    }
    let now = now_ms();
    let expires_at = match &req.expires_at {
        Some(s) => {
            let t = parse_rfc3339(s)
                .ok_or_else(|| Error::Invalid("expires_at must be RFC 3339".into()))?;
            if t <= now {
                return Err(Error::Invalid("expires_at is in the past".into()));
            }
            Some(t)
        }
        None => None,
    };
    let max_downloads = file::parse_max_downloads(req.max_downloads)?;
    let file_id = uuid::Uuid::new_v4().to_string();
    let object_key = format!("{}/{}", state.keys.user_hash(user_id), file_id);

    // No quota reserved and no `pending` row for an upload that cannot happen now.
    state.blobs.available().await.map_err(store_error)?;
    let mut tx = state.db.begin().await?;
    quota::reserve(
        &mut tx,
        user_id,
        req.encrypted_size_bytes as i64,
        quota_limits(state),
        now,
    )
    .await?;
    rows::insert_pending(
        &mut tx,
        &NewFile {
            id: &file_id,
            user_id,
            object_key: &object_key,
            file_name,
            mime_type: mime_type.as_deref(),
            digest: digest.as_ref(),
            meta: meta.as_ref(),
            encrypted_size: req.encrypted_size_bytes as i64,
            key_mode: req.key_management_mode.as_str(),
            expires_at,
            max_downloads,
            now,
        },
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("hashdrop_presigns_total").increment(1);

    let (url, url_expires_at) = state.blobs.presign_put(
        &object_key,
        req.encrypted_size_bytes,
        Duration::from_secs(limits.upload_url_ttl_secs),
    );
    Ok(Presigned {
        file_id,
        object_key,
        url,
        url_expires_at,
    })
}

fn quota_limits(state: &AppState) -> QuotaLimits {
    let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
    let l = &state.cfg.limits;
    QuotaLimits {
        global_bytes: clamp(l.global_bytes),
        user_bytes: clamp(l.user_bytes),
        user_files: clamp(l.user_files),
    }
}

/// A completed upload.
#[derive(Debug)]
pub struct Completed {
    /// Its object.
    pub object_key: String,
    /// Its stored size.
    pub size: u64,
}

/// Measures the stored object: a missing object is refused (the file stays
/// `pending`), one whose size differs from the declared size fails the upload and
/// ends the file's life. Completing an `uploaded` file again answers the same.
pub async fn complete(state: &AppState, user_id: &str, req: &CompleteRequest) -> Result<Completed> {
    let file_id = file::parse_file_id(&req.file_id)?;
    let row = rows::upload_state(&state.db, &file_id, user_id)
        .await?
        .ok_or(FILE_NOT_FOUND)?;
    let given = file::parse_digest(req.plaintext_hash.as_deref(), req.keyed_digest.as_deref())?;
    let presigned = row.digest();
    if let (Some(given), Some(presigned)) = (&given, &presigned) {
        if given != presigned {
            return Err(Error::Invalid(
                "the digest differs from the one given at presign".into(),
            ));
        }
    }
    match row.status() {
        Some(FileStatus::Uploaded) => {
            return Ok(Completed {
                object_key: row.object_key,
                size: row.encrypted_size as u64,
            })
        }
        Some(FileStatus::Pending) => {}
        _ => return Err(FILE_NOT_FOUND),
    }
    // A client that hashed while uploading sends the digest only now.
    let Some(digest) = presigned.or(given) else {
        return Err(Error::Invalid(
            "keyed_digest (or plaintext_hash) is required here because presign did not carry one"
                .into(),
        ));
    };
    // An unreachable store is a 503 and the file stays `pending`: the client may
    // retry complete, and the pending sweeper cleans up if it never does.
    let Some(stored) = state
        .blobs
        .size(&row.object_key)
        .await
        .map_err(store_error)?
    else {
        return Err(Error::Invalid("object has not been uploaded".into()));
    };
    if stored != row.encrypted_size as u64 {
        end_life(state, &file_id, Ending::Failed).await?;
        return Err(if stored > state.cfg.limits.file_max_bytes {
            Error::TooLarge("uploaded object exceeds the size limit")
        } else {
            Error::Invalid(
                "uploaded object size differs from encrypted_size_bytes; upload failed".into(),
            )
        });
    }
    let plaintext_size = req.plaintext_size_bytes.unwrap_or(0).min(i64::MAX as u64) as i64;
    if !rows::mark_uploaded(
        &state.db,
        &file_id,
        user_id,
        plaintext_size,
        &digest,
        now_ms(),
    )
    .await?
    {
        return Err(FILE_NOT_FOUND);
    }
    metrics::counter!("hashdrop_uploads_completed_total").increment(1);
    Ok(Completed {
        object_key: row.object_key,
        size: stored,
    })
}

/// Which files a call to [`end_in`] ends.
#[derive(Debug, Clone, Copy)]
pub enum Ended<'a> {
    /// One live file, for a reason other than its owner.
    Life {
        /// The file.
        file_id: &'a str,
        /// Why.
        ending: Ending,
    },
    /// One file its owner deletes, in any state.
    ByOwner {
        /// The file.
        file_id: &'a str,
        /// Its owner.
        owner: &'a str,
    },
    /// Every file of an account being deleted.
    AllOf {
        /// The account.
        owner: &'a str,
    },
    /// Every file (the dev reset).
    Every,
}

/// Ends the chosen files' lives inside `tx`: locks the global usage row first (as
/// every quota path does, so none can deadlock another), changes or removes the
/// rows, releases the quota of each file that was live exactly once (only the
/// statement that took a file out of a live state returns it), and queues the
/// deletion of each object. Returns the ids to pass to [`after_end`] once `tx`
/// commits.
pub async fn end_in(state: &AppState, tx: &mut Tx, which: Ended<'_>) -> Result<Vec<String>> {
    quota::lock_global(tx).await?;
    let now = now_ms();
    let ended = match which {
        Ended::Life { file_id, ending } => {
            rows::end_life(tx, file_id, FileStatus::ended_by(ending), now)
                .await?
                .into_iter()
                .collect()
        }
        Ended::ByOwner { file_id, owner } => rows::remove_owned(tx, file_id, owner)
            .await?
            .into_iter()
            .collect(),
        Ended::AllOf { owner } => rows::remove_all_of(tx, owner).await?,
        Ended::Every => rows::remove_every(tx).await?,
    };
    let max_attempts = state.cfg.jobs.max_attempts;
    let mut ids = Vec::with_capacity(ended.len());
    for f in ended {
        if f.was_live {
            quota::release(tx, &f.user_id, f.encrypted_size).await?;
        }
        let delete = Job::DeleteBlob { key: f.object_key };
        jobs::enqueue(tx, &delete, max_attempts, now).await?;
        ids.push(f.id);
    }
    Ok(ids)
}

/// After the transaction of [`end_in`] committed: wakes the worker for the object
/// deletions and drops the files from the share cache.
pub async fn after_end(state: &AppState, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    state.jobs_notify.notify_one();
    state.cache.invalidate(ids).await;
}

/// Ends one live file's life (`failed` or `deleted`). False if it was not live
/// (someone else got there first).
pub async fn end_life(state: &AppState, file_id: &str, ending: Ending) -> Result<bool> {
    let mut tx = state.db.begin().await?;
    let ids = end_in(state, &mut tx, Ended::Life { file_id, ending }).await?;
    tx.commit().await?;
    after_end(state, &ids).await;
    Ok(!ids.is_empty())
}

/// The owner's delete of the one file `prefix` names; an ambiguous prefix is a
/// conflict. Of parallel deletes of one file only one succeeds; the others find
/// nothing.
pub async fn delete(state: &AppState, owner: &str, prefix: Option<&str>) -> Result<()> {
    let prefix = file::parse_id_prefix(prefix)?;
    // The primary: deleting a file uploaded a moment ago must find it.
    let found = rows::by_prefix(&state.db, owner, &prefix, Freshness::Latest).await?;
    let file_id = match found.as_slice() {
        [] => return Err(FILE_NOT_FOUND),
        [one] => one.id.clone(),
        _ => return Err(Error::Conflict("id prefix matches several files")),
    };
    let mut tx = state.db.begin().await?;
    let ids = end_in(
        state,
        &mut tx,
        Ended::ByOwner {
            file_id: &file_id,
            owner,
        },
    )
    .await?;
    if ids.is_empty() {
        return Err(FILE_NOT_FOUND);
    }
    tx.commit().await?;
    after_end(state, &ids).await;
    Ok(())
}

/// The owner's files, newest first, as the JSON array of `hashdrop_wire::FileSummary`;
/// none is not found (as the reference answers). May lag behind a just-completed
/// upload when a replica is configured.
pub async fn list_json(state: &AppState, owner: &str) -> Result<String> {
    let (count, json) = rows::listing_json(&state.db, owner).await?;
    if count == 0 {
        return Err(Error::NotFound("no files found"));
    }
    Ok(json)
}

/// The owner's files whose id starts with `prefix`; none is not found. May lag.
pub async fn find(state: &AppState, owner: &str, prefix: Option<&str>) -> Result<Vec<Details>> {
    let prefix = file::parse_id_prefix(prefix)?;
    let files = rows::by_prefix(&state.db, owner, &prefix, Freshness::MayLag).await?;
    if files.is_empty() {
        return Err(Error::NotFound("no files match"));
    }
    Ok(files)
}

/// The stored digest columns of the owner's file `id`: (plaintext SHA-256, keyed
/// digest), either empty when the upload recorded the other kind (or none yet).
pub async fn digests(state: &AppState, owner: &str, id: Option<&str>) -> Result<(String, String)> {
    let id = exact_id(id)?;
    rows::digests(&state.db, &id, owner)
        .await?
        .ok_or(FILE_NOT_FOUND)
}

/// A full file id from a `?id=` query.
pub fn exact_id(id: Option<&str>) -> Result<String> {
    file::parse_file_id(id.ok_or_else(|| Error::Invalid("missing id query parameter".into()))?)
}

/// Whether a signed upload to `object_key` may store an object: a `pending` file
/// must own the key. A signed PUT URL stays valid until it expires, but an object
/// no file owns (deleted, failed, never presigned) would sit outside every quota
/// and never be swept.
pub async fn awaits_upload(state: &AppState, object_key: &str) -> Result<bool> {
    let Some((_, file_id)) = object_key.split_once('/') else {
        return Ok(false);
    };
    Ok(rows::is_pending_object(&state.db, file_id, object_key).await?)
}

/// The public, counted download URL of a file.
pub fn download_url(state: &AppState, user_id: &str, file_id: &str) -> String {
    format!(
        "{}/files/download/{}/{}",
        state.public_url,
        state.keys.user_hash(user_id),
        file_id
    )
}

/// The share page URL of a file (the key goes in the fragment, client side).
pub fn share_url(state: &AppState, file_id: &str) -> String {
    format!("{}/d/{}", state.public_url, file_id)
}
