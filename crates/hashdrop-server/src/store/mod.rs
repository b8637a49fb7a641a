//! The store: every SQL statement of the server, over SQLite or PostgreSQL, chosen by
//! the URL's scheme.
//!
//! Queries are runtime-checked (no `DATABASE_URL` at build time) and written in the
//! common subset of both dialects: `$N` placeholders, integer unix-millisecond
//! timestamps, TEXT ids. Each runs on the native driver of its database (the
//! `match` in [`on_conn!`] expands a statement once per driver), so rows decode
//! straight into typed structs.
//!
//! Callers never pick a pool. Functions that take `&Db` choose for themselves: the
//! primary for anything that decides a write or must see the caller's own write,
//! the replica (when configured and answering) for listings that tolerate lag, the
//! relaxed pool for counters a crash may forget, and on SQLite the single writer
//! slot for every write but the job worker's claim (see `jobs::claim`). Functions that take `&mut Tx` run inside a caller's
//! transaction: that is how a service makes several of them one change.

pub mod accounts;
pub mod files;
pub mod jobs;
pub mod ops;
pub mod quota;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::OwnedMutexGuard;

/// Which database sits behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file in WAL mode.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A connection of either driver, borrowed for one store function.
#[derive(Debug)]
pub enum Conn<'c> {
    /// SQLite.
    Sqlite(&'c mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'c mut PgConnection),
}

/// Runs `$body` once per driver with `$c` bound to the `&mut` connection, so each
/// statement is built and decoded by its own database's driver.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite($c) => $body,
            $crate::store::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// One statement on `$conn` with its parameters, on either driver:
/// `sql!(conn, execute, SQL, a, b)` returns the rows affected;
/// `sql!(conn, query_as fetch_optional, SQL, a)` (or `query_scalar`, and `fetch_one`,
/// `fetch_all`) returns what the query decodes to.
macro_rules! sql {
    ($conn:expr, execute, $sql:expr $(, $bind:expr)* $(,)?) => {
        $crate::store::on_conn!($conn, |c| sqlx::query($sql)
            $(.bind($bind))*
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
    };
    ($conn:expr, $build:ident $fetch:ident, $sql:expr $(, $bind:expr)* $(,)?) => {
        $crate::store::on_conn!($conn, |c| sqlx::$build($sql)
            $(.bind($bind))*
            .$fetch(&mut *c)
            .await)
    };
}
pub(crate) use sql;

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A pooled connection, holding the SQLite writer slot when it was taken for a write.
#[derive(Debug)]
pub struct Pooled {
    conn: PooledConn,
    _writer: Option<OwnedMutexGuard<()>>,
}

#[derive(Debug)]
enum PooledConn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    /// The connection, for one store function.
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.conn {
            PooledConn::Sqlite(c) => Conn::Sqlite(c),
            PooledConn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A write transaction on either backend; dropping it without [`Tx::commit`] rolls
/// back (and frees the SQLite writer slot).
#[derive(Debug)]
pub struct Tx {
    inner: TxInner,
    _writer: Option<OwnedMutexGuard<()>>,
}

#[derive(Debug)]
enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// The transaction's connection, for one store function.
    pub fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            TxInner::Sqlite(t) => Conn::Sqlite(t),
            TxInner::Postgres(t) => Conn::Postgres(t),
        }
    }

    /// Commits (and releases the SQLite writer slot).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await,
            TxInner::Postgres(t) => t.commit().await,
        }
    }
}

/// Handle to the metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    primary: Pool,
    /// PostgreSQL read replica for reads that may lag.
    replica: Option<PgPool>,
    /// Whether the replica answered its last check (see [`Db::with_replica`]).
    replica_up: Arc<AtomicBool>,
    /// PostgreSQL only: connections to the primary with `synchronous_commit = off`.
    relaxed: Option<PgPool>,
    /// SQLite allows one writer; queueing write transactions here, in FIFO order,
    /// beats letting connections collide on the file lock, where SQLite's busy
    /// handler sleeps for milliseconds and wrecks tail latency.
    write_lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

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

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

impl Db {
    /// Connects (creating the SQLite file if needed) and applies embedded migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        if url.starts_with("sqlite:") {
            Db::connect_sqlite(url).await
        } else if is_postgres_url(url) {
            Db::connect_postgres(url).await
        } else {
            anyhow::bail!("unsupported database URL scheme (want sqlite:// or postgres://)")
        }
    }

    async fn connect_sqlite(url: &str) -> anyhow::Result<Db> {
        let opts = SqliteConnectOptions::from_str(url)
            .context("parsing database URL")?
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // sqlx pings every connection it hands out; a SQLite connection is a file
            // this process holds open, never dropped by a peer, and its ping is one
            // more round trip to the connection's thread before every statement.
            .test_before_acquire(false)
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
            .await?;
        SQLITE_MIGRATOR
            .run(&pool)
            .await
            .context("applying migrations")?;
        Ok(Db {
            primary: Pool::Sqlite(pool),
            replica: None,
            replica_up: Arc::new(AtomicBool::new(false)),
            relaxed: None,
            write_lock: Some(Arc::new(tokio::sync::Mutex::new(()))),
        })
    }

    async fn connect_postgres(url: &str) -> anyhow::Result<Db> {
        let opts = PgConnectOptions::from_str(url).context("parsing database URL")?;
        let relaxed = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect_lazy_with(opts.clone());
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        POSTGRES_MIGRATOR
            .run(&pool)
            .await
            .context("applying migrations")?;
        Ok(Db {
            primary: Pool::Postgres(pool),
            replica: None,
            replica_up: Arc::new(AtomicBool::new(false)),
            relaxed: Some(relaxed),
            write_lock: None,
        })
    }

    /// Adds a PostgreSQL read replica (no migrations: it follows the primary). The
    /// pool connects lazily, so a replica that is down does not stop startup. A task
    /// checks it every second: while it does not answer, lag-tolerant reads go to the
    /// primary and readiness reports `degraded`, so losing the one replica every
    /// instance shares slows the fleet down instead of taking it out of rotation.
    /// Must be called inside the Tokio runtime.
    pub fn with_replica(mut self, url: &str) -> anyhow::Result<Db> {
        anyhow::ensure!(
            self.backend() == Backend::Postgres && is_postgres_url(url),
            "database_replica_url needs a PostgreSQL primary and a postgres:// replica URL"
        );
        let opts = PgConnectOptions::from_str(url).context("parsing database_replica_url")?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A read that races an outage should fail fast, not hang for 10 s.
            .acquire_timeout(REPLICA_CHECK_TIMEOUT * 2)
            .connect_lazy_with(opts);
        watch_replica(pool.clone(), Arc::downgrade(&self.replica_up));
        self.replica = Some(pool);
        Ok(self)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.primary {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    async fn writer_slot(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    async fn acquire(pool: &Pool) -> Result<PooledConn, sqlx::Error> {
        Ok(match pool {
            Pool::Sqlite(p) => PooledConn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => PooledConn::Postgres(p.acquire().await?),
        })
    }

    /// A primary connection for reads that decide a write or must see the latest
    /// commit.
    pub(crate) async fn latest(&self) -> Result<Pooled, sqlx::Error> {
        Ok(Pooled {
            conn: Db::acquire(&self.primary).await?,
            _writer: None,
        })
    }

    /// A connection for reads that tolerate replication lag: the replica when one is
    /// configured and answering, else the primary.
    pub(crate) async fn lagging(&self) -> Result<Pooled, sqlx::Error> {
        match &self.replica {
            Some(replica) if self.replica_up.load(Ordering::Relaxed) => Ok(Pooled {
                conn: PooledConn::Postgres(replica.acquire().await?),
                _writer: None,
            }),
            _ => self.latest().await,
        }
    }

    /// A primary connection for one write statement, holding the SQLite writer slot.
    pub(crate) async fn writer(&self) -> Result<Pooled, sqlx::Error> {
        let writer = self.writer_slot().await;
        Ok(Pooled {
            conn: Db::acquire(&self.primary).await?,
            _writer: writer,
        })
    }

    /// A connection for single-statement writes that a database crash may forget,
    /// such as download counters: on PostgreSQL its sessions run with
    /// `synchronous_commit = off`, so a commit does not wait for the WAL flush (and a
    /// hot row's lock is held for microseconds, not for a client round trip as a
    /// `SET LOCAL` transaction would). On SQLite it is [`Db::writer`].
    pub(crate) async fn relaxed_writer(&self) -> Result<Pooled, sqlx::Error> {
        match &self.relaxed {
            Some(relaxed) => Ok(Pooled {
                conn: PooledConn::Postgres(relaxed.acquire().await?),
                _writer: None,
            }),
            None => self.writer().await,
        }
    }

    /// Starts a write transaction. On SQLite it takes the writer slot and the file
    /// lock up front (`BEGIN IMMEDIATE`) so a read-then-write transaction waits for
    /// the lock instead of failing with SQLITE_BUSY halfway through.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let writer = self.writer_slot().await;
        let inner = match &self.primary {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => TxInner::Postgres(p.begin().await?),
        };
        Ok(Tx {
            inner,
            _writer: writer,
        })
    }

    /// The replica's state: `None` without one, else whether its last check passed.
    pub fn replica_up(&self) -> Option<bool> {
        self.replica
            .as_ref()
            .map(|_| self.replica_up.load(Ordering::Relaxed))
    }

    /// Round trip to the primary, used by readiness (the replica has its own watch).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sql!(self.latest().await?.conn(), execute, "SELECT 1").map(drop)
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match &self.primary {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
        if let Some(relaxed) = &self.relaxed {
            relaxed.close().await;
        }
        if let Some(replica) = &self.replica {
            replica.close().await;
        }
    }
}

/// Runs a one-parameter write statement and returns the rows it affected.
pub(crate) async fn write_one(db: &Db, statement: &str, param: i64) -> Result<u64, sqlx::Error> {
    sql!(db.writer().await?.conn(), execute, statement, param)
}

/// How often, and how patiently, the replica is checked.
const REPLICA_CHECK_EVERY: Duration = Duration::from_secs(1);
const REPLICA_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Checks the replica every [`REPLICA_CHECK_EVERY`] and records the verdict in `up`,
/// until the last [`Db`] holding `up` is gone.
fn watch_replica(pool: PgPool, up: Weak<AtomicBool>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` builds the bundled SQLite without the two process-wide
    /// mutexes every read took; a build that lost the setting (the variable renamed
    /// upstream, a build outside this repository) runs, only slower, so this says so.
    #[tokio::test]
    async fn the_bundled_sqlite_is_built_without_global_locks_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let Pool::Sqlite(pool) = &db.primary else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    /// A database from before completion cleared `upload_id` (migrations up to 0007,
    /// one uploaded and one pending multipart file), upgraded: the uploaded file no
    /// longer names a store upload its delete would try to abort; the pending one
    /// keeps the id its parts still need.
    #[tokio::test]
    async fn upgrading_forgets_the_upload_id_of_finished_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let before = dir.path().join("migrations-0001-0007");
        std::fs::create_dir(&before).unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.as_str() < "0008" {
                std::fs::copy(&path, before.join(&name)).unwrap();
            }
        }
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let opts = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::migrate::Migrator::new(before.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
             VALUES ('u', 'u@example.com', 'x', 0, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for (id, status) in [("done", "uploaded"), ("open", "pending")] {
            sqlx::query(
                "INSERT INTO files (id, user_id, object_key, file_name, plaintext_hash, \
                 encrypted_size, key_mode, status, created_at, updated_at, upload_id) \
                 VALUES ($1, 'u', $1, '', '', 1, 'vault', $2, 0, 0, 'upload-' || $1)",
            )
            .bind(id)
            .bind(status)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let db = Db::connect(&url).await.unwrap();
        let Pool::Sqlite(pool) = &db.primary else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let ids: Vec<(String, String)> =
            sqlx::query_as("SELECT id, upload_id FROM files ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(
            ids,
            [
                ("done".to_string(), String::new()),
                ("open".to_string(), "upload-open".to_string())
            ]
        );
    }
}
