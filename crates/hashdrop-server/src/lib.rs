//! `hashdrop-server`: the Hashdrop API server as a library, so the binary, the
//! integration tests and the CLI's tests can all start it in-process.
//!
//! Start: [`App::build`] from a [`config::Config`], then [`App::serve`] with a bound
//! listener and a shutdown future.
#![forbid(unsafe_code)]

pub mod api;
pub mod blob;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod jobs;
pub mod mailer;
pub mod observability;
pub mod openapi;
pub mod private_fs;
pub mod quota;
pub mod ratelimit;
pub mod redis_link;
pub mod state;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use config::Config;
pub use state::AppState;

/// A configured server, ready to serve.
#[derive(Debug)]
pub struct App {
    state: AppState,
}

impl App {
    /// Creates the data dir, loads or generates secrets, connects the database
    /// (applying migrations) and opens the blob store.
    pub async fn build(cfg: Config) -> anyhow::Result<App> {
        // Install the metrics recorder before the first request is counted.
        observability::prometheus();
        private_fs::create_dir(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        if let Some(path) = db::sqlite_path(&cfg.database_url()) {
            private_fs::prepare_sqlite_file(&path)?;
        }
        let secrets = crypto::Secrets::load_or_create(&cfg.data_dir, &cfg.auth)?;
        let keys = crypto::Keys::new(&secrets);
        let mut db = db::Db::connect(&cfg.database_url()).await?;
        if let Some(url) = cfg
            .database_replica_url
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            db = db.with_replica(url)?;
        }
        let public_url: Arc<str> = cfg.public_url().into();
        let mailer = mailer::from_config(&cfg)?;
        let instance_id: Arc<str> = cfg.instance_id().into();
        tracing::info!(instance = %instance_id, "instance id");
        metrics::gauge!("hashdrop_instance_info", "instance" => instance_id.to_string()).set(1.0);
        let opened = blob::open(&cfg.blob_store_url(), &public_url, keys.clone(), &cfg.s3)?;
        let state = AppState {
            hasher: crypto::PasswordHasherCfg::new(&cfg.auth)?,
            limiter: ratelimit::from_config(&cfg.rate_limit)?,
            cache: cache::from_config(&cfg.cache)?,
            mailer,
            instance_id,
            cfg: Arc::new(cfg),
            db,
            keys,
            blobs: opened.store,
            local_blobs: opened.local,
            draining: Arc::new(AtomicBool::new(false)),
            jobs_notify: Arc::new(Notify::new()),
            public_url,
            probes: Arc::default(),
        };
        Ok(App { state })
    }

    /// The shared state (tests use it to reach the database and job queue).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves; then readiness turns 503,
    /// the listener closes after `shutdown_grace_ms`, in-flight requests finish and
    /// background tasks stop.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let background = jobs::spawn_background(state.clone(), stop_rx);
        let router = api::router(state.clone());
        let draining = state.draining.clone();
        let grace = Duration::from_millis(state.cfg.shutdown_grace_ms);
        let deadline = Duration::from_secs(state.cfg.shutdown_timeout_secs);
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            tracing::info!("shutdown requested: draining");
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            let _ = closed_tx.send(());
        };
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        // In-flight requests get `shutdown_timeout_secs` after the listener closes; a
        // client that never finishes must not keep the process alive forever.
        let give_up = async move {
            match closed_rx.await {
                Ok(()) => tokio::time::sleep(deadline).await,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = serve => r.context("serving")?,
            _ = give_up => {
                tracing::warn!("shutdown timeout: abandoning requests still in flight");
            }
        }
        let _ = stop_tx.send(true);
        for h in background {
            let _ = h.await;
        }
        state.db.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Takes a consistent SQLite snapshot with `VACUUM INTO` and stores it in the blob
/// store as `backups/hashdrop-{unix_ms}.sqlite`. Returns the object key.
pub async fn backup_now(state: &AppState) -> anyhow::Result<String> {
    anyhow::ensure!(
        state.db.backend() == db::Backend::Sqlite,
        "backups are built for SQLite only (use pg_dump for PostgreSQL)"
    );
    let dir = state.cfg.data_dir.join("tmp");
    private_fs::create_dir_async(&dir).await?;
    let name = format!("hashdrop-{}.sqlite", db::now_ms());
    let tmp = dir.join(&name);
    let path = tmp
        .to_str()
        .context("data dir path is not UTF-8")?
        .replace('\'', "''");
    sqlx::query(&format!("VACUUM INTO '{path}'"))
        .execute(state.db.pool())
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

/// Restores a snapshot from the blob store over the SQLite database at `db_path`.
/// The server must be stopped. `key` `None` picks the newest snapshot. The current
/// file is kept as `{db_path}.before-restore`.
pub async fn restore(cfg: &Config, key: Option<&str>) -> anyhow::Result<String> {
    let url = cfg.database_url();
    let db_path = url
        .strip_prefix("sqlite://")
        .context("restore is built for SQLite only")?;
    let db_path = std::path::PathBuf::from(db_path.split('?').next().unwrap_or(db_path));
    let secrets = crypto::Secrets::load_or_create(&cfg.data_dir, &cfg.auth)?;
    let store = blob::open(
        &cfg.blob_store_url(),
        &cfg.public_url(),
        crypto::Keys::new(&secrets),
        &cfg.s3,
    )?
    .store;
    let key = match key {
        Some(k) => k.to_string(),
        None => store
            .list("backups")
            .await?
            .pop()
            .context("no backups found")?,
    };
    let tmp = db_path.with_extension("restoring");
    store.get_file(&key, &tmp).await?;
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
