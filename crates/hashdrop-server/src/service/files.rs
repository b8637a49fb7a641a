//! A file's life as its owner drives it: presign (reserve quota, `pending` row,
//! signed upload URL), complete (measure the object, `uploaded`), look up, and the
//! one way a life ends ([`end_in`]) shared by expiry, failure, the owner's delete,
//! account deletion and the dev reset.

use std::time::Duration;

use hashdrop_wire::{CompleteRequest, PartPlan, PresignRequest};

use crate::domain::file::{self, Ending, FileStatus, NewSealedMeta, PlainDigest};
use crate::domain::job::Job;
use crate::domain::time::{now_ms, parse_rfc3339};
use crate::domain::{error::FILE_NOT_FOUND, Error, Result};
use crate::infra::blob::{store_error, HeldPart, PartSpan};
use crate::state::AppState;
use crate::store::files::{self as rows, Details, Freshness, NewFile};
use crate::store::quota::{self, QuotaLimits, Reservation};
use crate::store::{jobs, Tx};

/// A reserved upload slot.
#[derive(Debug)]
pub struct Presigned {
    /// The new file's id.
    pub file_id: String,
    /// Where its object goes.
    pub object_key: String,
    /// How the object is to be sent.
    pub upload: Upload,
}

/// How an upload's object is sent.
#[derive(Debug)]
pub enum Upload {
    /// One PUT of the whole object.
    Single {
        /// The signed upload URL.
        url: String,
        /// When the URL stops working (unix ms).
        url_expires_at: i64,
    },
    /// Parts, each through a URL from [`part_urls`].
    Multipart {
        /// How many parts the object has.
        part_count: u64,
    },
}

/// One signed part URL.
#[derive(Debug)]
pub struct PartUrl {
    /// 1-based part number.
    pub number: u64,
    /// The exact length the part must have.
    pub size: u64,
    /// The signed URL.
    pub url: String,
    /// When it stops working (unix ms).
    pub expires_at: i64,
}

/// Most part URLs one request may ask for.
pub const MAX_PART_URLS_PER_REQUEST: usize = 1000;

/// A presign request, checked.
struct CheckedPresign<'a> {
    file_name: &'a str,
    mime_type: Option<String>,
    meta: Option<NewSealedMeta>,
    digest: Option<PlainDigest>,
    size: u64,
    expires_at: Option<i64>,
    max_downloads: Option<i64>,
    /// For a multipart upload: the number of parts.
    part_count: Option<u64>,
}

/// Checks everything a presign request says before anything is stored.
fn check_presign<'a>(
    state: &AppState,
    req: &'a PresignRequest,
    now: i64,
) -> Result<CheckedPresign<'a>> {
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
    let part_count = match &req.parts {
        None => None,
        Some(plan) => Some(plan.part_count(req.encrypted_size_bytes).ok_or_else(|| {
            Error::Invalid(format!(
                "parts: every part but the last must be at least {} bytes, no part more \
                 than {} bytes, part 1 at most the whole object, and there may be at most \
                 {} parts",
                hashdrop_wire::MIN_PART_BYTES,
                hashdrop_wire::MAX_PART_BYTES,
                hashdrop_wire::MAX_PARTS
            ))
        })?),
    };
    Ok(CheckedPresign {
        file_name,
        mime_type,
        meta,
        digest,
        size: req.encrypted_size_bytes,
        expires_at,
        max_downloads: file::parse_max_downloads(req.max_downloads)?,
        part_count,
    })
}

/// Checks the request, reserves quota and creates the `pending` row in one
/// transaction, then signs an upload URL for exactly the declared size, or, for a
/// multipart upload, starts it in the store (part URLs come from [`part_urls`]).
pub async fn presign(state: &AppState, user_id: &str, req: &PresignRequest) -> Result<Presigned> {
    let now = now_ms();
    let checked = check_presign(state, req, now)?;
    let file_id = uuid::Uuid::new_v4().to_string();
    let object_key = format!("{}/{}", state.keys.user_hash(user_id), file_id);

    // No quota reserved and no `pending` row for an upload that cannot happen now.
    state.blobs.available().await.map_err(store_error)?;
    // The store's upload exists before the row that names it; if the row cannot be
    // written, the upload is aborted again.
    let upload_id = match checked.part_count {
        Some(_) => Some(
            state
                .blobs
                .start_multipart(&object_key)
                .await
                .map_err(store_error)?,
        ),
        None => None,
    };
    let multipart = upload_id.as_deref().zip(req.parts);
    let new = NewFile {
        id: &file_id,
        user_id,
        object_key: &object_key,
        file_name: checked.file_name,
        mime_type: checked.mime_type.as_deref(),
        digest: checked.digest.as_ref(),
        meta: checked.meta.as_ref(),
        encrypted_size: checked.size as i64,
        key_mode: req.key_management_mode.as_str(),
        expires_at: checked.expires_at,
        max_downloads: checked.max_downloads,
        now,
        multipart: multipart.map(|(id, plan)| (id, plan.first_part_bytes, plan.part_bytes)),
    };
    let recorded = record_pending(state, &new).await;
    if let (Err(_), Some(id)) = (&recorded, &upload_id) {
        if let Err(e) = state.blobs.abort_multipart(&object_key, id).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "aborting a multipart upload whose file was not recorded failed"
            );
        }
    }
    recorded?;
    metrics::counter!("hashdrop_presigns_total").increment(1);

    let upload = match checked.part_count {
        Some(part_count) => Upload::Multipart { part_count },
        None => {
            let (url, url_expires_at) = state.blobs.presign_put(
                &object_key,
                checked.size,
                Duration::from_secs(state.cfg.limits.upload_url_ttl_secs),
            );
            Upload::Single {
                url,
                url_expires_at,
            }
        }
    };
    Ok(Presigned {
        file_id,
        object_key,
        upload,
    })
}

/// Reserves the file's quota and writes its `pending` row, in one transaction. A
/// single PUT reserves its whole size; a multipart upload reserves the file and
/// then its parts one by one as their URLs are signed ([`part_urls`]), once it is
/// clear that the whole file fits now.
async fn record_pending(state: &AppState, new: &NewFile<'_>) -> Result<()> {
    let limits = quota_limits(state);
    let mut tx = state.db.begin().await?;
    let bytes = match new.multipart {
        Some(_) => 0,
        None => new.encrypted_size,
    };
    quota::reserve(
        &mut tx,
        new.user_id,
        Reservation { bytes, files: 1 },
        limits,
        new.now,
    )
    .await?;
    if new.multipart.is_some() {
        quota::check_room(&mut tx, new.user_id, new.encrypted_size, limits).await?;
    }
    rows::insert_pending(&mut tx, new).await?;
    tx.commit().await?;
    Ok(())
}

/// The owner's `pending` multipart upload `file_id`: its object key, upload id,
/// size and part plan.
async fn pending_multipart(
    state: &AppState,
    user_id: &str,
    file_id: &str,
) -> Result<(String, String, u64, PartPlan)> {
    let file_id = file::parse_file_id(file_id)?;
    let row = rows::upload_state(&state.db, &file_id, user_id)
        .await?
        .ok_or(FILE_NOT_FOUND)?;
    if row.status() != Some(FileStatus::Pending) {
        return Err(Error::Conflict(
            "the upload is not pending (completed, failed or deleted)",
        ));
    }
    let Some((upload_id, first_part_bytes, part_bytes)) = row.multipart() else {
        return Err(Error::Invalid(
            "the upload is a single PUT, not a multipart upload".into(),
        ));
    };
    let plan = PartPlan {
        first_part_bytes,
        part_bytes,
    };
    let upload_id = upload_id.to_string();
    Ok((row.object_key, upload_id, row.encrypted_size as u64, plan))
}

/// Signed URLs for some parts of the owner's pending multipart upload, each for
/// its part's exact length.
pub async fn part_urls(
    state: &AppState,
    user_id: &str,
    file_id: &str,
    numbers: &[u64],
) -> Result<Vec<PartUrl>> {
    if numbers.is_empty() || numbers.len() > MAX_PART_URLS_PER_REQUEST {
        return Err(Error::Invalid(format!(
            "part_numbers must list 1 to {MAX_PART_URLS_PER_REQUEST} parts"
        )));
    }
    let file_id = file::parse_file_id(file_id)?;
    let (key, upload_id, size, plan) = pending_multipart(state, user_id, &file_id).await?;
    let spans = numbers
        .iter()
        .map(|&number| {
            let part_size = plan.part_len(size, number).ok_or_else(|| {
                Error::Invalid(format!(
                    "part {number} does not exist: the upload has {} parts",
                    plan.part_count(size).unwrap_or(0)
                ))
            })?;
            Ok(PartSpan {
                number,
                offset: plan.part_offset(size, number).unwrap_or(0),
                size: part_size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if !hold_parts(state, user_id, &file_id, &spans).await? {
        return Err(Error::Conflict(
            "the upload is not pending (completed, failed or deleted)",
        ));
    }
    let ttl = Duration::from_secs(state.cfg.limits.upload_url_ttl_secs);
    Ok(spans
        .into_iter()
        .map(|span| {
            let (url, expires_at) = state.blobs.presign_part(&key, &upload_id, span, ttl);
            PartUrl {
                number: span.number,
                size: span.size,
                url,
                expires_at,
            }
        })
        .collect())
}

/// Reserves the quota of the parts about to be signed that were never counted
/// before (a URL lets exactly its part's bytes land, so a part counts from its first
/// URL on), in one transaction: either every new part is counted or, over the quota,
/// none is and nothing is signed. False when the file is no longer pending.
async fn hold_parts(
    state: &AppState,
    user_id: &str,
    file_id: &str,
    spans: &[PartSpan],
) -> Result<bool> {
    let parts: Vec<(u64, u64)> = spans.iter().map(|s| (s.number, s.size)).collect();
    let mut tx = state.db.begin().await?;
    quota::lock_global(&mut tx).await?;
    let Some(added) = rows::count_parts(&mut tx, file_id, &parts).await? else {
        return Ok(false);
    };
    if added > 0 {
        let more = Reservation {
            bytes: added,
            files: 0,
        };
        quota::reserve(&mut tx, user_id, more, quota_limits(state), now_ms()).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Every part of a multipart upload, as [`hold_parts`] counts them.
fn all_spans(size: u64, plan: PartPlan) -> Vec<PartSpan> {
    (1..=plan.part_count(size).unwrap_or(0))
        .filter_map(|number| {
            Some(PartSpan {
                number,
                offset: plan.part_offset(size, number)?,
                size: plan.part_len(size, number)?,
            })
        })
        .collect()
}

/// The parts the store holds of the owner's pending multipart upload, and how many
/// the object has.
pub async fn stored_parts(
    state: &AppState,
    user_id: &str,
    file_id: &str,
) -> Result<(u64, Vec<HeldPart>)> {
    let (key, upload_id, size, plan) = pending_multipart(state, user_id, file_id).await?;
    // A complete cut off between joining the parts and recording the file (its
    // client gone) leaves the object whole and the upload pending: every part is then
    // held, and completing again finishes it.
    let joined = state.blobs.size(&key).await.map_err(store_error)?;
    if joined == Some(size) {
        let held = all_spans(size, plan)
            .into_iter()
            .map(|s| HeldPart {
                number: s.number,
                size: s.size,
                etag: String::new(),
            })
            .collect();
        return Ok((plan.part_count(size).unwrap_or(0), held));
    }
    let held = state
        .blobs
        .list_parts(&key, &upload_id)
        .await
        .map_err(store_error)?;
    Ok((plan.part_count(size).unwrap_or(0), held))
}

/// Joins a multipart upload's parts into its object once every part is there with
/// its planned length. A missing part leaves the file `pending` (the client sends
/// it and completes again); a part of the wrong length cannot be there (each URL is
/// signed for its length) but is refused the same way.
async fn join_parts(
    state: &AppState,
    key: &str,
    upload_id: &str,
    size: u64,
    plan: PartPlan,
) -> Result<()> {
    let count = plan.part_count(size).unwrap_or(0);
    let held = state
        .blobs
        .list_parts(key, upload_id)
        .await
        .map_err(store_error)?;
    let missing: Vec<u64> = (1..=count)
        .filter(|n| {
            !held
                .iter()
                .any(|p| p.number == *n && Some(p.size) == plan.part_len(size, *n))
        })
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(10).map(u64::to_string).collect();
        return Err(Error::Invalid(format!(
            "{} of {count} parts are missing or incomplete (parts {}{}); send them, then complete again",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" }
        )));
    }
    let parts: Vec<HeldPart> = held.into_iter().filter(|p| p.number <= count).collect();
    state
        .blobs
        .complete_multipart(key, upload_id, &parts)
        .await
        .map_err(store_error)
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
    // Parts become the object here; a retried complete finds it joined already.
    if let Some((upload_id, first_part_bytes, part_bytes)) = row.multipart() {
        let joined = state
            .blobs
            .size(&row.object_key)
            .await
            .map_err(store_error)?
            .is_some();
        let plan = PartPlan {
            first_part_bytes,
            part_bytes,
        };
        let size = row.encrypted_size as u64;
        // An uploaded file holds its whole size. Every part was counted when its URL
        // was signed, unless an older instance signed it during a rolling upgrade:
        // count what is missing now (nothing, normally; over the quota, refused). A
        // file no longer pending is found so below. Before the join, so that a
        // request cut off after it has as little as possible left to do.
        hold_parts(state, user_id, &file_id, &all_spans(size, plan)).await?;
        if !joined {
            join_parts(state, &row.object_key, upload_id, size, plan).await?;
        }
    }
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
        // Deleted while it was being completed: its delete job may have run before
        // the parts were joined, so the joined object would belong to no file.
        let now_uploaded = rows::upload_state(&state.db, &file_id, user_id)
            .await?
            .is_some_and(|r| r.status() == Some(FileStatus::Uploaded));
        if !now_uploaded && row.multipart().is_some() {
            if let Err(e) = state.blobs.delete(&row.object_key).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "removing an orphaned joined object failed"
                );
            }
        }
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
            quota::release(tx, &f.user_id, f.held_bytes).await?;
        }
        let delete = Job::DeleteBlob {
            key: f.object_key,
            upload_id: (!f.upload_id.is_empty()).then_some(f.upload_id),
        };
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

/// The plaintext SHA-256 an older client's upload of the owner's file `id` recorded.
/// A file with none (a keyed digest instead, or not complete) is a conflict, not an
/// empty hash: a client that only knows SHA-256 would report every byte-exact download
/// of it as a mismatch.
pub async fn plaintext_sha256(state: &AppState, owner: &str, id: Option<&str>) -> Result<String> {
    let id = exact_id(id)?;
    let hash = rows::plaintext_sha256(&state.db, &id, owner)
        .await?
        .ok_or(FILE_NOT_FOUND)?;
    if hash.is_empty() {
        return Err(Error::Conflict(
            "this file has no plaintext SHA-256 on record: it is not complete yet, or it was \
             uploaded with a keyed digest instead, which `hashdrop decrypt --verify` checks \
             from the link (upgrade an older hashdrop CLI)",
        ));
    }
    Ok(hash)
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
