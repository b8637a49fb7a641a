//! What a link holder can do: read a share's facts and take a counted download.
//!
//! The download is decided by ONE conditional UPDATE that checks ownership (the
//! object key embeds the owner hash), status, expiry, the total cap and the daily
//! counter, and counts in the same step: with a daily limit of N exactly N
//! concurrent requests win, on both backends. Only a refusal pays for a second
//! query to explain itself. A cached entry only lets a foreign or expired link be
//! refused before that write (its facts cannot change while the file is live); it
//! never admits a download.

use std::time::Duration;

use crate::domain::error::{DOWNLOAD_CAP_REACHED, FILE_NOT_FOUND, LINK_EXPIRED};
use crate::domain::file::{self, FileFacts};
use crate::domain::time::secs_until_next_day;
use crate::domain::{Error, Result};
use crate::infra::blob::valid_key;
use crate::state::AppState;
use crate::store::files::{self as rows, PublicFile};

/// A live share as a link holder sees it.
#[derive(Debug)]
pub struct Share {
    /// Its id.
    pub file_id: String,
    /// What never changes while it lives.
    pub facts: FileFacts,
    /// Downloads left under the total cap, if it has one.
    pub downloads_left: Option<u64>,
}

fn refuse_if_unshareable(facts: &FileFacts, download_count: i64, now: i64) -> Result<()> {
    if facts.expires_at.is_some_and(|e| e <= now) {
        return Err(LINK_EXPIRED);
    }
    if facts.max_downloads.is_some_and(|m| download_count >= m) {
        return Err(DOWNLOAD_CAP_REACHED);
    }
    Ok(())
}

async fn uploaded(state: &AppState, file_id: &str) -> Result<PublicFile> {
    rows::uploaded(&state.db, file_id)
        .await?
        .ok_or(FILE_NOT_FOUND)
}

/// The live, shareable file `file_id`: cache-aside for its facts. The download
/// count is never cached, so a cached file reads it (from the primary) only when it
/// has a cap to check.
pub async fn share(state: &AppState, file_id: &str, now: i64) -> Result<Share> {
    let file_id = file::parse_file_id(file_id)?;
    let (facts, download_count) = match state.cache.get(&file_id).await {
        Some(facts) if facts.max_downloads.is_none() => (facts, 0),
        _ => {
            let f = uploaded(state, &file_id).await?;
            state.cache.put(&file_id, &f.facts).await;
            (f.facts, f.download_count)
        }
    };
    refuse_if_unshareable(&facts, download_count, now)?;
    Ok(Share {
        downloads_left: facts
            .max_downloads
            .map(|m| (m - download_count).max(0) as u64),
        file_id,
        facts,
    })
}

fn object_key_of(user_hash: &str, file_id: &str) -> Result<(String, String)> {
    let file_id = file::parse_file_id(file_id)?;
    let key = format!("{user_hash}/{file_id}");
    if !valid_key(&key) {
        return Err(FILE_NOT_FOUND);
    }
    Ok((file_id, key))
}

fn daily_limit(state: &AppState) -> i64 {
    state
        .cfg
        .limits
        .daily_downloads_per_file
        .min(i64::MAX as u64) as i64
}

fn daily_limit_reached(now: i64) -> Error {
    Error::Limited {
        message: "daily download limit reached for this file",
        code: "download_limit",
        retry_after: secs_until_next_day(now),
    }
}

/// Counts one download of the file behind a download link and returns a
/// short-lived signed URL of its object.
pub async fn download(
    state: &AppState,
    user_hash: &str,
    file_id: &str,
    now: i64,
) -> Result<String> {
    let (file_id, object_key) = object_key_of(user_hash, file_id)?;
    let cached = state.cache.get(&file_id).await;
    if let Some(f) = &cached {
        if f.object_key != object_key {
            return Err(FILE_NOT_FOUND);
        }
        if f.expires_at.is_some_and(|e| e <= now) {
            return Err(LINK_EXPIRED);
        }
    }
    let counted =
        rows::count_download(&state.db, &file_id, &object_key, daily_limit(state), now).await?;
    let Some(facts) = counted else {
        // Refused: say why, from the primary.
        explain_refusal(state, &file_id, &object_key, now).await?;
        return Err(daily_limit_reached(now));
    };
    if cached.is_none() {
        state.cache.put(&file_id, &facts).await;
    }
    metrics::counter!("hashdrop_downloads_total").increment(1);
    Ok(state.blobs.presign_get(
        &object_key,
        Duration::from_secs(state.cfg.limits.download_url_ttl_secs),
    ))
}

/// The refusal a download would get now, without counting one: `Ok` if it would be
/// admitted. Link checkers and `HEAD` use it.
pub async fn check_download(
    state: &AppState,
    user_hash: &str,
    file_id: &str,
    now: i64,
) -> Result<()> {
    let (file_id, object_key) = object_key_of(user_hash, file_id)?;
    let f = explain_refusal(state, &file_id, &object_key, now).await?;
    if f.downloads_today(now) >= daily_limit(state) {
        return Err(daily_limit_reached(now));
    }
    Ok(())
}

/// Fails with the reason a download of `object_key` is refused (not found, not this
/// owner's, expired, used up); `Ok` with the file if none of those holds.
async fn explain_refusal(
    state: &AppState,
    file_id: &str,
    object_key: &str,
    now: i64,
) -> Result<PublicFile> {
    let f = uploaded(state, file_id).await?;
    if f.facts.object_key != object_key {
        return Err(FILE_NOT_FOUND);
    }
    refuse_if_unshareable(&f.facts, f.download_count, now)?;
    Ok(f)
}
