//! Durable job queue in the database, its worker, and the scheduled cleaners.
//!
//! A job is claimed by one atomic `UPDATE ... RETURNING` (on PostgreSQL the candidate
//! row is picked with `FOR UPDATE SKIP LOCKED`, so many instances share the queue).
//! A claimed job holds a lease; a worker that dies leaves it to be reclaimed when the
//! lease runs out. Failures retry with exponential backoff and jitter until
//! `max_attempts`, then the job is `dead` until `hashdrop-server jobs retry` revives it.

use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{now_ms, Backend, Db};
use crate::mailer::{Mail, Mailer};
use crate::state::AppState;

/// Sends one [`Mail`].
pub const KIND_SEND_MAIL: &str = "send_mail";
/// Deletes one object: `{"key": "..."}`.
pub const KIND_DELETE_BLOB: &str = "delete_blob";
/// Runs one cleaner: `{"cleaner": "..."}`.
pub const KIND_CLEANUP: &str = "cleanup";
/// Takes a SQLite snapshot into the blob store.
pub const KIND_BACKUP: &str = "backup";

const LEASE_MS: i64 = 5 * 60 * 1000;

/// A job row as shown by `jobs list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRow {
    /// Job id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Next run (unix ms).
    pub run_at: i64,
    /// Last failure message.
    pub last_error: Option<String>,
}

/// Adds a job in the caller's transaction, so it exists iff the change that needs
/// it commits. A `dedupe_key` already present makes this a no-op.
pub async fn enqueue(
    conn: &mut AnyConnection,
    kind: &str,
    payload: &serde_json::Value,
    dedupe_key: Option<&str>,
    max_attempts: u32,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_at, dedupe_key, \
         created_at, updated_at) VALUES ($1, $2, 'queued', 0, $3, $4, $5, $4, $4) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(kind)
    .bind(payload.to_string())
    .bind(max_attempts as i64)
    .bind(now)
    .bind(dedupe_key)
    .execute(conn)
    .await?;
    Ok(())
}

/// Enqueues deletion of one object.
pub async fn enqueue_blob_delete(
    conn: &mut AnyConnection,
    key: &str,
    max_attempts: u32,
) -> Result<(), sqlx::Error> {
    enqueue(
        conn,
        KIND_DELETE_BLOB,
        &serde_json::json!({ "key": key }),
        None,
        max_attempts,
    )
    .await
}

struct Claimed {
    id: i64,
    kind: String,
    payload: String,
    attempts: i64,
    max_attempts: i64,
}

async fn claim(db: &Db) -> Result<Option<Claimed>, sqlx::Error> {
    let now = now_ms();
    let pick = match db.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        // SQLite has a single writer; the UPDATE itself is the lock.
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1, \
         updated_at = $2 WHERE id = (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= $2) \
         OR (state = 'running' AND locked_until < $2) ORDER BY run_at LIMIT 1 {pick}) \
         RETURNING id, kind, payload, attempts, max_attempts"
    );
    let row: Option<(i64, String, String, i64, i64)> = sqlx::query_as(&sql)
        .bind(now + LEASE_MS)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    Ok(
        row.map(|(id, kind, payload, attempts, max_attempts)| Claimed {
            id,
            kind,
            payload,
            attempts,
            max_attempts,
        }),
    )
}

/// Delay before retry `attempt` (1-based): base·2^(attempt-1), capped, ±50% jitter.
pub fn backoff_ms(base: u64, max: u64, attempt: i64) -> u64 {
    let exp = base.saturating_mul(1u64 << (attempt.clamp(1, 30) - 1) as u32);
    let capped = exp.min(max).max(1);
    let jitter = rand::thread_rng().gen_range(capped / 2..=capped);
    jitter.max(1)
}

async fn finish(db: &Db, job: &Claimed, result: anyhow::Result<()>, base: u64, max: u64) {
    let now = now_ms();
    let r = match result {
        // A sent mail's payload is dropped: it holds the OTP, and done jobs are kept
        // for days. Other payloads (object keys, cleaner names) stay for diagnosis.
        Ok(()) => {
            sqlx::query(
                "UPDATE jobs SET state = 'done', locked_until = NULL, updated_at = $1, \
             payload = CASE WHEN kind = $3 THEN '{}' ELSE payload END WHERE id = $2",
            )
            .bind(now)
            .bind(job.id)
            .bind(KIND_SEND_MAIL)
            .execute(db.pool())
            .await
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let dead = job.attempts >= job.max_attempts;
            if dead {
                tracing::error!(job_id = job.id, kind = %job.kind, error = %msg, "job dead");
            } else {
                tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %msg, "job failed; will retry");
            }
            let run_at = now + backoff_ms(base, max, job.attempts) as i64;
            sqlx::query(
                "UPDATE jobs SET state = $1, run_at = $2, locked_until = NULL, last_error = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(if dead { "dead" } else { "queued" })
            .bind(run_at)
            .bind(msg)
            .bind(now)
            .bind(job.id)
            .execute(db.pool())
            .await
        }
    };
    if let Err(e) = r {
        tracing::error!(job_id = job.id, error = %e, "recording job result failed");
    }
}

async fn run_job(state: &AppState, mailer: &dyn Mailer, job: &Claimed) -> anyhow::Result<()> {
    let payload: serde_json::Value = serde_json::from_str(&job.payload).context("payload")?;
    match job.kind.as_str() {
        KIND_SEND_MAIL => {
            let mail: Mail = serde_json::from_value(payload).context("mail payload")?;
            mailer.send(&mail).await
        }
        KIND_DELETE_BLOB => {
            let key = payload["key"].as_str().context("key")?;
            state.blobs.delete(key).await
        }
        KIND_CLEANUP => {
            let name = payload["cleaner"].as_str().context("cleaner")?;
            let n = run_cleaner(state, name).await?;
            tracing::info!(cleaner = name, affected = n, "cleaner ran");
            Ok(())
        }
        KIND_BACKUP => {
            let key = crate::backup_now(state).await?;
            tracing::info!(key, "backup stored");
            Ok(())
        }
        other => anyhow::bail!("unknown job kind {other:?}"),
    }
}

/// Runs queued jobs until none is due. Returns how many ran (tests drive it directly).
pub async fn drain_once(state: &AppState) -> anyhow::Result<usize> {
    let mut n = 0;
    while let Some(job) = claim(&state.db).await? {
        let r = run_job(state, state.mailer.as_ref(), &job).await;
        finish(
            &state.db,
            &job,
            r,
            state.cfg.jobs.backoff_base_ms,
            state.cfg.jobs.backoff_max_ms,
        )
        .await;
        n += 1;
    }
    Ok(n)
}

/// Names of the scheduled cleaners.
pub const CLEANERS: &[&str] = &[
    "stale_pending_uploads",
    "stale_upload_parts",
    "stale_file_records",
    "refresh_tokens",
    "download_counters",
    "unverified_users",
    "expired_otps",
    "expired_shares",
    "finished_jobs",
];

/// Runs one cleaner now; returns the number of rows affected.
pub async fn run_cleaner(state: &AppState, name: &str) -> anyhow::Result<u64> {
    let db = &state.db;
    let now = now_ms();
    let day_ms = 24 * 3600 * 1000;
    let n = match name {
        "stale_pending_uploads" => {
            let cutoff = now - state.cfg.limits.pending_upload_ttl_secs as i64 * 1000;
            let stale: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM files WHERE status = 'pending' AND created_at < $1 LIMIT 500",
            )
            .bind(cutoff)
            .fetch_all(db.pool())
            .await?;
            let mut n = 0;
            for (id,) in stale {
                if crate::api::files::fail_pending(state, &id).await? {
                    n += 1;
                }
            }
            n
        }
        "stale_upload_parts" => {
            // Older than any PUT can still be running: the URL's lifetime plus the
            // idle timeout, plus a minute of slack.
            let limits = &state.cfg.limits;
            let age = limits.upload_url_ttl_secs + limits.upload_idle_timeout_secs + 60;
            match &state.local_blobs {
                Some(local) => local.sweep_parts(Duration::from_secs(age)).await?,
                None => 0,
            }
        }
        "stale_file_records" => {
            sqlx::query(
                "DELETE FROM files WHERE status IN ('failed', 'deleted') AND updated_at < $1",
            )
            .bind(now - day_ms)
            .execute(db.pool())
            .await?
            .rows_affected()
        }
        "refresh_tokens" => {
            sqlx::query(
                "DELETE FROM refresh_tokens WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $2)",
            )
            .bind(now)
            .bind(now - day_ms)
            .execute(db.pool())
            .await?
            .rows_affected()
        }
        "download_counters" => {
            let _w = db.write_slot().await;
            sqlx::query(
                "UPDATE files SET dl_day_count = 0 WHERE dl_day < $1 AND dl_day_count > 0",
            )
            .bind(now / day_ms)
            .execute(db.pool())
            .await?
            .rows_affected()
        }
        "unverified_users" => {
            sqlx::query("DELETE FROM users WHERE verified_at IS NULL AND created_at < $1")
                .bind(now - state.cfg.auth.unverified_user_ttl_secs as i64 * 1000)
                .execute(db.pool())
                .await?
                .rows_affected()
        }
        "expired_otps" => {
            sqlx::query("DELETE FROM otps WHERE expires_at < $1")
                .bind(now)
                .execute(db.pool())
                .await?
                .rows_affected()
        }
        "expired_shares" => {
            // An owner-set expiry ends the file's life: the object goes, the record
            // turns `deleted`, the quota is released. Expired means `expires_at <= now`,
            // as on the download path, so a link refused as expired is also cleaned.
            let expired: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM files WHERE status = 'uploaded' AND expires_at IS NOT NULL \
                 AND expires_at <= $1 LIMIT 500",
            )
            .bind(now)
            .fetch_all(db.pool())
            .await?;
            let mut n = 0;
            for (id,) in expired {
                if crate::api::files::retire_file(state, &id, "deleted").await? {
                    n += 1;
                }
            }
            n
        }
        "finished_jobs" => {
            sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1")
                .bind(now - 7 * day_ms)
                .execute(db.pool())
                .await?
                .rows_affected()
        }
        other => anyhow::bail!("unknown cleaner {other:?}"),
    };
    Ok(n)
}

/// Enqueues every cleaner (and a backup on SQLite) for the current time slot. The
/// dedupe key makes this idempotent across instances.
pub async fn schedule_due(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let max = state.cfg.jobs.max_attempts;
    let mut conn = state.db.pool().acquire().await?;
    if state.cfg.jobs.cleaners_enabled {
        let slot = now / (state.cfg.jobs.cleaner_interval_secs.max(1) as i64 * 1000);
        for c in CLEANERS {
            let key = format!("cleanup:{c}:{slot}");
            enqueue(
                &mut conn,
                KIND_CLEANUP,
                &serde_json::json!({ "cleaner": c }),
                Some(&key),
                max,
            )
            .await?;
        }
    }
    if state.db.backend() == Backend::Sqlite && state.cfg.backup.interval_secs > 0 {
        let slot = now / (state.cfg.backup.interval_secs as i64 * 1000);
        let key = format!("backup:{slot}");
        enqueue(
            &mut conn,
            KIND_BACKUP,
            &serde_json::json!({}),
            Some(&key),
            max,
        )
        .await?;
    }
    Ok(())
}

/// Starts the worker and the scheduler; both stop when `stop` turns true.
pub fn spawn_background(state: AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    if !state.cfg.jobs.worker_enabled {
        return handles;
    }
    {
        let state = state.clone();
        let mut stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let poll = Duration::from_millis(state.cfg.jobs.poll_interval_ms.max(10));
            loop {
                if let Err(e) = drain_once(&state).await {
                    tracing::error!(error = %format!("{e:#}"), "job worker");
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = state.jobs_notify.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                if *stop.borrow() {
                    break;
                }
            }
        }));
    }
    {
        let mut stop = stop;
        handles.push(tokio::spawn(async move {
            let every = Duration::from_secs(state.cfg.jobs.cleaner_interval_secs.clamp(1, 60));
            loop {
                if let Err(e) = schedule_due(&state).await {
                    tracing::error!(error = %format!("{e:#}"), "job scheduler");
                } else {
                    state.jobs_notify.notify_one();
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if *stop.borrow() {
                    break;
                }
            }
        }));
    }
    handles
}

/// Lists jobs, optionally only one state, newest first.
pub async fn list(db: &Db, state_filter: Option<&str>) -> anyhow::Result<Vec<JobRow>> {
    type Row = (i64, String, String, i64, i64, i64, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, kind, state, attempts, max_attempts, run_at, last_error FROM jobs \
         WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT 200",
    )
    .bind(state_filter.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, kind, state, attempts, max_attempts, run_at, last_error)| JobRow {
                id,
                kind,
                state,
                attempts,
                max_attempts,
                run_at,
                last_error,
            },
        )
        .collect())
}

/// Requeues a dead job with a fresh attempt budget. Returns false if `id` is not dead.
pub async fn retry(db: &Db, id: i64) -> anyhow::Result<bool> {
    let now = now_ms();
    let r = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 \
         WHERE id = $2 AND state = 'dead'",
    )
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        for attempt in 1..10 {
            let d = backoff_ms(100, 5000, attempt);
            let nominal = (100u64 << (attempt - 1)).min(5000);
            assert!(d >= nominal / 2 && d <= nominal, "{attempt}: {d}");
        }
    }
}
