//! Database access: one `AnyPool` over SQLite or PostgreSQL, chosen by URL scheme.
//!
//! Queries are runtime-checked (no `DATABASE_URL` at build time) and written in the
//! common subset of both dialects: `$N` placeholders, integer unix-millisecond
//! timestamps, TEXT ids. The few places that differ ask [`Db::backend`].

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database sits behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file in WAL mode.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Handle to the metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// Read replica for reads that may lag; `None` reads the primary.
    replica: Option<AnyPool>,
    /// Whether the replica answered its last check (see [`Db::with_replica`]).
    replica_up: Arc<AtomicBool>,
    /// PostgreSQL only: connections to the primary with `synchronous_commit = off`.
    relaxed: Option<AnyPool>,
    backend: Backend,
    /// SQLite allows one writer; queueing write transactions here, in FIFO order,
    /// beats letting connections collide on the file lock, where SQLite's busy
    /// handler sleeps for milliseconds and wrecks tail latency.
    write_lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A write transaction on either backend. Derefs to the connection, so queries
/// take `&mut *tx`; dropping it without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    /// Commits (and releases the SQLite writer slot).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The file of a `sqlite://PATH[?...]` URL; `None` for other URLs and in-memory
/// databases.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| std::path::PathBuf::from(path))
}

impl Db {
    /// Connects (creating the SQLite file if needed) and applies embedded migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL scheme (want sqlite:// or postgres://)");
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url).context("parsing database URL")?;
        let relaxed = (backend == Backend::Postgres).then(|| {
            AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET synchronous_commit = off").await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(opts.clone())
        });
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the single writer; NORMAL sync is
                            // durable across process crashes in WAL mode.
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?
            }
        };
        let write_lock = match backend {
            Backend::Sqlite => Some(Arc::new(tokio::sync::Mutex::new(()))),
            Backend::Postgres => None,
        };
        let db = Db {
            pool,
            replica: None,
            replica_up: Arc::new(AtomicBool::new(false)),
            relaxed,
            backend,
            write_lock,
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&db.pool).await,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&db.pool).await,
        }
        .context("applying migrations")?;
        Ok(db)
    }

    /// Adds a PostgreSQL read replica (no migrations: it follows the primary). The
    /// pool connects lazily, so a replica that is down does not stop startup. A task
    /// checks it every second: while it does not answer, lag-tolerant reads go to the
    /// primary and readiness reports `degraded`, so losing the one replica every
    /// instance shares slows the fleet down instead of taking it out of rotation.
    /// Must be called inside the Tokio runtime.
    pub fn with_replica(mut self, url: &str) -> anyhow::Result<Db> {
        anyhow::ensure!(
            self.backend == Backend::Postgres
                && (url.starts_with("postgres:") || url.starts_with("postgresql:")),
            "database_replica_url needs a PostgreSQL primary and a postgres:// replica URL"
        );
        let opts = AnyConnectOptions::from_str(url).context("parsing database_replica_url")?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            // A read that races an outage should fail fast, not hang for 10 s.
            .acquire_timeout(REPLICA_CHECK_TIMEOUT * 2)
            .connect_lazy_with(opts);
        watch_replica(pool.clone(), Arc::downgrade(&self.replica_up));
        self.replica = Some(pool);
        Ok(self)
    }

    /// The primary pool: writes, and reads that must see the latest commit.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reads that tolerate replication lag: the replica when one is
    /// configured, else the primary. Never use it for a read that decides a write
    /// or must see the caller's own just-committed write.
    pub fn read_pool(&self) -> &AnyPool {
        match &self.replica {
            Some(replica) if self.replica_up.load(Ordering::Relaxed) => replica,
            _ => &self.pool,
        }
    }

    /// The replica's state: `None` without one, else whether its last check passed.
    pub fn replica_up(&self) -> Option<bool> {
        self.replica
            .as_ref()
            .map(|_| self.replica_up.load(Ordering::Relaxed))
    }

    /// The pool for single-statement writes that a database crash may forget, such as
    /// download counters: on PostgreSQL its sessions run with `synchronous_commit =
    /// off`, so a commit does not wait for the WAL flush (and a hot row's lock is held
    /// for microseconds, not for a client round trip as a `SET LOCAL` transaction
    /// would). On SQLite it is the primary pool; take [`Db::write_slot`] first.
    pub fn relaxed_pool(&self) -> &AnyPool {
        self.relaxed.as_ref().unwrap_or(&self.pool)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so a read-then-write transaction waits for the lock
    /// instead of failing with SQLITE_BUSY halfway through.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.write_lock {
            Some(lock) => {
                let guard = lock.clone().lock_owned().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx {
                    tx,
                    _writer: Some(guard),
                })
            }
            None => Ok(Tx {
                tx: self.pool.begin().await?,
                _writer: None,
            }),
        }
    }

    /// Takes the SQLite writer slot for a single write statement run outside
    /// [`Db::begin`] (no-op on PostgreSQL). Hold the guard while the statement runs.
    pub async fn write_slot(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Round trip to the primary, used by readiness (the replica has its own watch).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(relaxed) = &self.relaxed {
            relaxed.close().await;
        }
        if let Some(replica) = &self.replica {
            replica.close().await;
        }
    }
}

/// How often, and how patiently, the replica is checked.
const REPLICA_CHECK_EVERY: Duration = Duration::from_secs(1);
const REPLICA_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Checks the replica every [`REPLICA_CHECK_EVERY`] and records the verdict in `up`,
/// until the last [`Db`] holding `up` is gone.
fn watch_replica(pool: AnyPool, up: Weak<AtomicBool>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REPLICA_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            every.tick().await;
            let Some(up) = up.upgrade() else { break };
            let answered = tokio::time::timeout(
                REPLICA_CHECK_TIMEOUT,
                sqlx::query("SELECT 1").execute(&pool),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            up.store(answered, Ordering::Relaxed);
            if last != Some(answered) {
                if answered {
                    tracing::info!("read replica answers: lag-tolerant reads use it");
                } else {
                    tracing::warn!("read replica unreachable: its reads go to the primary");
                }
                last = Some(answered);
            }
        }
    });
}

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}

/// Formats unix milliseconds as RFC 3339 (UTC, second precision).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses RFC 3339 into unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}
