//! The job worker and the scheduler: they claim durable jobs from the store and
//! hand each to the service that does the work.
//!
//! Failures retry with exponential backoff and jitter until `max_attempts`, then the
//! job is `dead` until `hashdrop-server jobs retry` revives it.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::job::{Cleaner, Job};
use crate::domain::time::now_ms;
use crate::service;
use crate::state::AppState;
use crate::store::jobs::{self, Claimed};
use crate::store::Backend;

/// Delay before retry `attempt` (1-based): base·2^(attempt-1), capped, ±50% jitter.
pub fn backoff_ms(base: u64, max: u64, attempt: i64) -> u64 {
    let exp = base.saturating_mul(1u64 << (attempt.clamp(1, 30) - 1) as u32);
    let capped = exp.min(max).max(1);
    let jitter = rand::thread_rng().gen_range(capped / 2..=capped);
    jitter.max(1)
}

async fn finish(state: &AppState, job: &Claimed, result: anyhow::Result<()>) {
    let now = now_ms();
    let r = match result {
        Ok(()) => jobs::mark_done(&state.db, job.id, now).await,
        Err(e) => {
            let msg = format!("{e:#}");
            let dead = job.attempts >= job.max_attempts;
            if dead {
                tracing::error!(job_id = job.id, kind = %job.kind, error = %msg, "job dead");
            } else {
                tracing::warn!(job_id = job.id, kind = %job.kind, attempt = job.attempts, error = %msg, "job failed; will retry");
            }
            let cfg = &state.cfg.jobs;
            let run_at =
                now + backoff_ms(cfg.backoff_base_ms, cfg.backoff_max_ms, job.attempts) as i64;
            jobs::mark_failed(&state.db, job.id, &msg, dead, run_at, now).await
        }
    };
    if let Err(e) = r {
        tracing::error!(job_id = job.id, error = %e, "recording job result failed");
    }
}

async fn run_job(state: &AppState, job: &Claimed) -> anyhow::Result<()> {
    match Job::decode(&job.kind, &job.payload)? {
        Job::SendMail(mail) => state.mailer.send(&mail).await,
        Job::DeleteBlob { key, upload_id } => {
            // The object first: a store that refuses the abort (retried) must not
            // keep the object alive meanwhile.
            state.blobs.delete(&key).await?;
            match upload_id {
                Some(upload_id) => state.blobs.abort_multipart(&key, &upload_id).await,
                None => Ok(()),
            }
        }
        Job::Cleanup(cleaner) => {
            let n = service::cleaners::run(state, cleaner).await?;
            tracing::info!(cleaner = cleaner.name(), affected = n, "cleaner ran");
            Ok(())
        }
        Job::Backup => {
            let key = service::ops::backup_now(state).await?;
            tracing::info!(key, "backup stored");
            Ok(())
        }
    }
}

/// Runs queued jobs until none is due. Returns how many ran (tests drive it directly).
pub async fn drain_once(state: &AppState) -> anyhow::Result<usize> {
    let mut n = 0;
    while let Some(job) = jobs::claim(&state.db, now_ms()).await? {
        let r = run_job(state, &job).await;
        finish(state, &job, r).await;
        n += 1;
    }
    Ok(n)
}

/// Enqueues every cleaner (and a backup on SQLite) for the current time slot. The
/// dedupe key makes this idempotent across instances.
pub async fn schedule_due(state: &AppState) -> anyhow::Result<()> {
    let now = now_ms();
    let max = state.cfg.jobs.max_attempts;
    if state.cfg.jobs.cleaners_enabled {
        let slot = now / (state.cfg.jobs.cleaner_interval_secs.max(1) as i64 * 1000);
        for c in Cleaner::ALL {
            let key = format!("cleanup:{}:{slot}", c.name());
            jobs::enqueue_once(&state.db, &Job::Cleanup(c), &key, max, now).await?;
        }
    }
    if state.db.backend() == Backend::Sqlite && state.cfg.backup.interval_secs > 0 {
        let slot = now / (state.cfg.backup.interval_secs as i64 * 1000);
        let key = format!("backup:{slot}");
        jobs::enqueue_once(&state.db, &Job::Backup, &key, max, now).await?;
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
