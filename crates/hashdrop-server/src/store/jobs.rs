//! The durable job queue: the `jobs` table.
//!
//! A job is claimed by one atomic `UPDATE ... RETURNING` (on PostgreSQL the candidate
//! row is picked with `FOR UPDATE SKIP LOCKED`, so many instances share the queue).
//! A claimed job holds a lease; a worker that dies leaves it to be reclaimed when the
//! lease runs out.

use serde::{Deserialize, Serialize};

use super::{sql, write_one, Backend, Conn, Db, Tx};
use crate::domain::job::{Job, KIND_SEND_MAIL};

/// How long a claimed job is its worker's before another may take it over.
const LEASE_MS: i64 = 5 * 60 * 1000;

/// A job row as shown by `jobs list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
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

async fn insert(
    conn: Conn<'_>,
    job: &Job,
    dedupe_key: Option<&str>,
    max_attempts: u32,
    now: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_at, \
         dedupe_key, created_at, updated_at) VALUES ($1, $2, 'queued', 0, $3, $4, $5, $4, $4) \
         ON CONFLICT (dedupe_key) DO NOTHING";
    let payload = job.payload().to_string();
    let kind = job.kind();
    sql!(
        conn,
        execute,
        SQL,
        kind,
        &payload,
        max_attempts as i64,
        now,
        dedupe_key
    )?;
    Ok(())
}

/// Adds a job in the caller's transaction, so it exists iff the change that needs it
/// commits.
pub async fn enqueue(
    tx: &mut Tx,
    job: &Job,
    max_attempts: u32,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert(tx.conn(), job, None, max_attempts, now).await
}

/// Adds a job on its own unless one with `dedupe_key` exists (the scheduler: every
/// instance enqueues the same slot's jobs, one row wins).
pub async fn enqueue_once(
    db: &Db,
    job: &Job,
    dedupe_key: &str,
    max_attempts: u32,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut c = db.writer().await?;
    insert(c.conn(), job, Some(dedupe_key), max_attempts, now).await
}

/// A job a worker holds the lease of.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
}

/// Claims the oldest due job (or one whose lease ran out). On SQLite this one write
/// runs outside the writer slot, ordered by SQLite's busy timeout instead: the
/// worker task queued behind request writes and then held the slot while the busy
/// runtime got round to it, which tripled the download redirect's p99 (9 ms without,
/// 20 to 26 ms with; docs/BENCHMARKS.md).
pub async fn claim(db: &Db, now: i64) -> Result<Option<Claimed>, sqlx::Error> {
    let pick = match db.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        // SQLite has a single writer; the UPDATE itself is the lock.
        Backend::Sqlite => "",
    };
    let statement = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_until = $1, \
         updated_at = $2 WHERE id = (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= $2) \
         OR (state = 'running' AND locked_until < $2) ORDER BY run_at LIMIT 1 {pick}) \
         RETURNING id, kind, payload, attempts, max_attempts"
    );
    let lease_end = now + LEASE_MS;
    sql!(db.latest().await?.conn(), query_as fetch_optional, &statement, lease_end, now)
}

/// Records success. A sent mail's payload is dropped: it holds the OTP, and done
/// jobs are kept for days. Other payloads (object keys, cleaner names) stay for
/// diagnosis.
pub async fn mark_done(db: &Db, id: i64, now: i64) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE jobs SET state = 'done', locked_until = NULL, updated_at = $1, \
         payload = CASE WHEN kind = $3 THEN '{}' ELSE payload END WHERE id = $2";
    sql!(
        db.writer().await?.conn(),
        execute,
        SQL,
        now,
        id,
        KIND_SEND_MAIL
    )?;
    Ok(())
}

/// Records a failure: queued again at `run_at`, or `dead` when `dead`.
pub async fn mark_failed(
    db: &Db,
    id: i64,
    error: &str,
    dead: bool,
    run_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE jobs SET state = $1, run_at = $2, locked_until = NULL, \
         last_error = $3, updated_at = $4 WHERE id = $5";
    let state = if dead { "dead" } else { "queued" };
    sql!(
        db.writer().await?.conn(),
        execute,
        SQL,
        state,
        run_at,
        error,
        now,
        id
    )?;
    Ok(())
}

/// Jobs, optionally only one state, newest first (at most 200).
pub async fn list(db: &Db, state_filter: Option<&str>) -> Result<Vec<JobRow>, sqlx::Error> {
    const SQL: &str = "SELECT id, kind, state, attempts, max_attempts, run_at, last_error \
         FROM jobs WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT 200";
    let state = state_filter.unwrap_or("");
    sql!(db.latest().await?.conn(), query_as fetch_all, SQL, state)
}

/// Requeues a dead job with a fresh attempt budget. False if `id` is not dead.
pub async fn retry(db: &Db, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, \
         updated_at = $1 WHERE id = $2 AND state = 'dead'";
    let n = sql!(db.writer().await?.conn(), execute, SQL, now, id)?;
    Ok(n == 1)
}

/// How many jobs are in each state (a metrics gauge).
pub async fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    const SQL: &str = "SELECT state, COUNT(*) FROM jobs GROUP BY state";
    sql!(db.latest().await?.conn(), query_as fetch_all, SQL)
}

/// Removes finished jobs last changed before `cutoff`.
pub async fn purge_done(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM jobs WHERE state = 'done' AND updated_at < $1";
    write_one(db, SQL, cutoff).await
}
