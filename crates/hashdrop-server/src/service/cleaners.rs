//! The scheduled cleaners: each sweeps one kind of leftover and returns how many it
//! removed or changed. Files whose life ends here end through
//! [`super::files::end_life`], like every other ending.

use std::time::Duration;

use crate::domain::file::Ending;
use crate::domain::job::Cleaner;
use crate::domain::time::{now_ms, DAY_MS};
use crate::state::AppState;
use crate::store::{accounts, files, jobs};

/// Runs one cleaner now; returns the number of rows (or files) affected.
pub async fn run(state: &AppState, cleaner: Cleaner) -> anyhow::Result<u64> {
    let db = &state.db;
    let now = now_ms();
    let secs = |s: u64| s as i64 * 1000;
    Ok(match cleaner {
        Cleaner::StalePendingUploads => {
            let cutoff = now - secs(state.cfg.limits.pending_upload_ttl_secs);
            end_each(
                state,
                files::stale_pending(db, cutoff).await?,
                Ending::Failed,
            )
            .await?
        }
        Cleaner::ExpiredShares => {
            // An owner-set expiry ends the file's life: the object goes, the record
            // turns `deleted`, the quota is released.
            end_each(state, files::expired(db, now).await?, Ending::Expired).await?
        }
        Cleaner::StaleUploadParts => {
            // Older than any PUT can still be running: the URL's lifetime plus the
            // idle timeout, plus a minute of slack.
            let limits = &state.cfg.limits;
            let age = limits.upload_url_ttl_secs + limits.upload_idle_timeout_secs + 60;
            // Multipart directories: idle longer than a pending upload may live.
            let abandoned = limits.pending_upload_ttl_secs.max(age) + 60;
            match &state.local_blobs {
                Some(local) => {
                    local.sweep_parts(Duration::from_secs(age)).await?
                        + local
                            .sweep_multipart(Duration::from_secs(abandoned))
                            .await?
                }
                None => 0,
            }
        }
        Cleaner::StaleFileRecords => files::purge_ended(db, now - DAY_MS).await?,
        Cleaner::RefreshTokens => accounts::purge_sessions(db, now, now - DAY_MS).await?,
        Cleaner::DownloadCounters => files::reset_day_counters(db, now).await?,
        Cleaner::UnverifiedUsers => {
            let ttl = secs(state.cfg.auth.unverified_user_ttl_secs);
            accounts::purge_unverified(db, now - ttl).await?
        }
        Cleaner::ExpiredOtps => accounts::purge_codes(db, now).await?,
        Cleaner::FinishedJobs => jobs::purge_done(db, now - 7 * DAY_MS).await?,
    })
}

async fn end_each(state: &AppState, ids: Vec<String>, ending: Ending) -> anyhow::Result<u64> {
    let mut n = 0;
    for id in ids {
        if super::files::end_life(state, &id, ending).await? {
            n += 1;
        }
    }
    Ok(n)
}
