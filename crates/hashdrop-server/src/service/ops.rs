//! Operator tasks: readiness, metrics gauges, backups and restore, the dev reset.

use anyhow::Context;

use super::files::{after_end, end_in, Ended};
use crate::config::Config;
use crate::domain::time::now_ms;
use crate::domain::{Error, Result};
use crate::infra::crypto::{Keys, Secrets};
use crate::infra::private_fs;
use crate::infra::redis_link::Health;
use crate::state::{AppState, DependencyChecks};
use crate::store::{self, accounts, jobs, quota};

/// The dependency checks behind readiness, at most one set in flight per instance
/// whatever the probe rate (probes are never rate limited: a limit anonymous traffic
/// can exhaust would let anyone take every instance out of the load balancer).
pub async fn dependency_checks(state: &AppState) -> DependencyChecks {
    state
        .probes
        .fresh(|| async {
            let rate_limit = async {
                if state.cfg.rate_limit.enabled {
                    state.limiter.health().await
                } else {
                    Health::Disabled
                }
            };
            let (db, blob, cache, rate_limit) = tokio::join!(
                state.db.ping(),
                state.blobs.check(),
                state.cache.health(),
                rate_limit
            );
            DependencyChecks {
                db_ok: db.is_ok(),
                blob_ok: blob.is_ok(),
                cache,
                rate_limit,
            }
        })
        .await
}

/// Samples the gauges that live in the database (job states, reserved bytes).
pub async fn sample_gauges(state: &AppState) {
    if let Ok(rows) = jobs::count_by_state(&state.db).await {
        for s in ["queued", "running", "done", "dead"] {
            let n = rows.iter().find(|r| r.0 == s).map(|r| r.1).unwrap_or(0);
            metrics::gauge!("hashdrop_jobs", "state" => s).set(n as f64);
        }
    }
    if let Ok(bytes) = quota::global_used(&state.db).await {
        metrics::gauge!("hashdrop_storage_reserved_bytes").set(bytes as f64);
    }
}

/// Dev mode only: deletes every account and file; every object goes by a job.
pub async fn reset(state: &AppState) -> Result<()> {
    if !state.cfg.dev_mode {
        return Err(Error::Forbidden {
            message: "reset is only available in dev mode",
            code: "not_dev_mode",
        });
    }
    let mut tx = state.db.begin().await?;
    let ids = end_in(state, &mut tx, Ended::Every).await?;
    accounts::remove_every(&mut tx).await?;
    tx.commit().await?;
    after_end(state, &ids).await;
    Ok(())
}

/// Takes a consistent SQLite snapshot and stores it in the blob store as
/// `backups/hashdrop-{unix_ms}.sqlite`, keeping the newest `backup.keep`. Returns
/// the object key.
pub async fn backup_now(state: &AppState) -> anyhow::Result<String> {
    let dir = state.cfg.data_dir.join("tmp");
    private_fs::create_dir_async(&dir).await?;
    let name = format!("hashdrop-{}.sqlite", now_ms());
    let tmp = dir.join(&name);
    let path = tmp.to_str().context("data dir path is not UTF-8")?;
    store::ops::snapshot_sqlite(&state.db, path)
        .await
        .context("VACUUM INTO")?;
    let key = format!("backups/{name}");
    let r = state.blobs.put_file(&key, &tmp).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    r?;
    // Names sort by time (fixed-width millisecond stamps), oldest first.
    let all = state.blobs.list("backups").await?;
    let keep = state.cfg.backup.keep.max(1) as usize;
    if all.len() > keep {
        for old in &all[..all.len() - keep] {
            state.blobs.delete(old).await?;
        }
    }
    Ok(key)
}

/// Restores a snapshot from the blob store over the SQLite database at the
/// configured path. The server must be stopped. `key` `None` picks the newest
/// snapshot. The current file is kept as `{db}.before-restore`.
pub async fn restore(cfg: &Config, key: Option<&str>) -> anyhow::Result<String> {
    let url = cfg.database_url();
    let db_path = store::sqlite_path(&url).context("restore is built for SQLite only")?;
    let secrets = Secrets::load_or_create(&cfg.data_dir, &cfg.auth)?;
    let blobs = crate::infra::blob::open(
        &cfg.blob_store_url(),
        &cfg.public_url(),
        Keys::new(&secrets),
        &cfg.s3,
    )?
    .store;
    let key = match key {
        Some(k) => k.to_string(),
        None => blobs
            .list("backups")
            .await?
            .pop()
            .context("no backups found")?,
    };
    let tmp = db_path.with_extension("restoring");
    blobs.get_file(&key, &tmp).await?;
    if db_path.exists() {
        tokio::fs::rename(&db_path, db_path.with_extension("db.before-restore")).await?;
    }
    for ext in ["db-wal", "db-shm"] {
        let _ = tokio::fs::remove_file(db_path.with_extension(ext)).await;
    }
    private_fs::restrict(&tmp, private_fs::FILE_MODE)?;
    tokio::fs::rename(&tmp, &db_path).await?;
    Ok(key)
}
