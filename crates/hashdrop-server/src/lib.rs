//! `hashdrop-server`: the Hashdrop API server as a library, so the binary, the
//! integration tests and the CLI's tests can all start it in-process.
//!
//! Start: [`App::build`] from a [`config::Config`], then [`App::serve`] with a bound
//! listener and a shutdown future.
//!
//! The crate is layered (docs/ARCHITECTURE.md; `scripts/check-layers.py` keeps it
//! so): `domain` (values, rules, the error) ← `store` (all SQL) and `infra` (blob
//! stores, cache, limiter, mailer, Redis, crypto) ← `service` (each lifecycle once)
//! ← `http` (routes that translate) and `worker` (jobs); `state` holds the built
//! pieces, and this file wires them together.
#![forbid(unsafe_code)]

pub mod config;
pub mod domain;
pub mod http;
pub mod infra;
pub mod observability;
pub mod service;
pub mod state;
pub mod store;
pub mod worker;

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
        infra::private_fs::create_dir(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        if let Some(path) = store::sqlite_path(&cfg.database_url()) {
            infra::private_fs::prepare_sqlite_file(&path)?;
        }
        let secrets = infra::crypto::Secrets::load_or_create(&cfg.data_dir, &cfg.auth)?;
        let keys = infra::crypto::Keys::new(&secrets);
        let mut db = store::Db::connect(&cfg.database_url()).await?;
        if let Some(url) = cfg
            .database_replica_url
            .as_deref()
            .filter(|u| !u.is_empty())
        {
            db = db.with_replica(url)?;
        }
        let public_url: Arc<str> = cfg.public_url().into();
        let mailer = infra::mailer::from_config(&cfg)?;
        let instance_id: Arc<str> = cfg.instance_id().into();
        tracing::info!(instance = %instance_id, "instance id");
        metrics::gauge!("hashdrop_instance_info", "instance" => instance_id.to_string()).set(1.0);
        let opened = infra::blob::open(&cfg.blob_store_url(), &public_url, keys.clone(), &cfg.s3)?;
        let state = AppState {
            hasher: infra::crypto::PasswordHasherCfg::new(&cfg.auth)?,
            limiter: infra::ratelimit::from_config(&cfg.rate_limit)?,
            cache: infra::cache::from_config(&cfg.cache)?,
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
        let background = worker::spawn_background(state.clone(), stop_rx);
        let router = http::router(state.clone());
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
