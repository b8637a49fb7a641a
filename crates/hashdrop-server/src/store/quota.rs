//! Storage quotas: conditional UPDATEs over `users` and the single `global_usage` row.
//!
//! `users.used_bytes/file_count` and `global_usage` count every `pending` and
//! `uploaded` file at the bytes it holds (`files.held_bytes`: its declared encrypted
//! size, or for a multipart upload still pending the parts counted so far; see
//! `crate::store::files::count_parts`). [`reserve`] checks and reserves
//! in one step (`... WHERE used + n <= limit`), so two concurrent reservations can
//! never both squeeze under a limit: SQLite runs one writer at a time, and
//! PostgreSQL re-checks the WHERE clause on the locked row. Every path locks the
//! global row before the user row, so they cannot deadlock.

use super::{sql, Db, Tx};
use crate::domain::Error;

/// Why a reservation was refused.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The service-wide byte limit is reached.
    #[error("global storage limit reached")]
    GlobalFull,
    /// The user's byte or file-count limit is reached.
    #[error("user storage quota exceeded")]
    UserFull,
    /// The user row is gone (account deleted) or not verified.
    #[error("no such verified user")]
    NoSuchUser,
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<QuotaError> for Error {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::GlobalFull => Error::Unavailable {
                message: "global storage limit reached; uploads are temporarily disabled",
                code: "global_quota_exceeded",
            },
            QuotaError::UserFull => Error::Forbidden {
                message: "storage quota exceeded",
                code: "quota_exceeded",
            },
            QuotaError::NoSuchUser => Error::Unauthorized("account no longer exists"),
            QuotaError::Db(e) => e.into(),
        }
    }
}

/// The limits a reservation must stay under.
#[derive(Debug, Clone, Copy)]
pub struct QuotaLimits {
    /// Bytes across every user.
    pub global_bytes: i64,
    /// Bytes per user.
    pub user_bytes: i64,
    /// Files per user.
    pub user_files: i64,
}

/// What one reservation takes.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    /// Bytes.
    pub bytes: i64,
    /// Files: 1 for a new file, 0 for more bytes of a file already counted.
    pub files: i64,
}

/// Reserves `what` for `user_id`. The caller's transaction must be rolled back
/// (dropped) when this fails, undoing a partial reservation.
pub async fn reserve(
    tx: &mut Tx,
    user_id: &str,
    what: Reservation,
    limits: QuotaLimits,
    now: i64,
) -> Result<(), QuotaError> {
    const GLOBAL: &str = "UPDATE global_usage SET used_bytes = used_bytes + $1 \
         WHERE id = 1 AND used_bytes + $1 <= $2";
    const USER: &str = "UPDATE users SET used_bytes = used_bytes + $1, \
         file_count = file_count + $6, updated_at = $2 \
         WHERE id = $3 AND verified_at IS NOT NULL AND used_bytes + $1 <= $4 \
         AND file_count + $6 <= $5";
    if sql!(tx.conn(), execute, GLOBAL, what.bytes, limits.global_bytes)? == 0 {
        return Err(QuotaError::GlobalFull);
    }
    let user = sql!(
        tx.conn(),
        execute,
        USER,
        what.bytes,
        now,
        user_id,
        limits.user_bytes,
        limits.user_files,
        what.files
    )?;
    if user == 1 {
        return Ok(());
    }
    Err(why_refused(tx, user_id).await?)
}

/// Whether `size` more bytes would fit under the limits now, without reserving them:
/// a multipart upload reserves its parts one by one as their URLs are signed, and
/// this lets presign refuse at once a file that could not fit at all. Not a promise:
/// another upload may take the room first, and its parts are then refused.
pub async fn check_room(
    tx: &mut Tx,
    user_id: &str,
    size: i64,
    limits: QuotaLimits,
) -> Result<(), QuotaError> {
    const GLOBAL: &str = "SELECT COUNT(*) FROM global_usage WHERE id = 1 AND used_bytes + $1 <= $2";
    const USER: &str = "SELECT COUNT(*) FROM users \
         WHERE id = $1 AND verified_at IS NOT NULL AND used_bytes + $2 <= $3";
    let global: i64 = sql!(tx.conn(), query_scalar fetch_one, GLOBAL, size, limits.global_bytes)?;
    if global == 0 {
        return Err(QuotaError::GlobalFull);
    }
    let user: i64 = sql!(
        tx.conn(),
        query_scalar fetch_one,
        USER,
        user_id,
        size,
        limits.user_bytes
    )?;
    if user == 1 {
        return Ok(());
    }
    Err(why_refused(tx, user_id).await?)
}

/// Why the user row did not take a reservation: gone (or unverified), or full.
async fn why_refused(tx: &mut Tx, user_id: &str) -> Result<QuotaError, sqlx::Error> {
    const VERIFIED: &str = "SELECT COUNT(*) FROM users WHERE id = $1 AND verified_at IS NOT NULL";
    let verified: i64 = sql!(tx.conn(), query_scalar fetch_one, VERIFIED, user_id)?;
    Ok(match verified {
        0 => QuotaError::NoSuchUser,
        _ => QuotaError::UserFull,
    })
}

/// Locks the global usage row. Every path that changes usage takes it first, so
/// paths that then lock file or user rows cannot deadlock each other. On PostgreSQL
/// it also waits out any reservation in flight.
pub async fn lock_global(tx: &mut Tx) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE global_usage SET used_bytes = used_bytes WHERE id = 1";
    sql!(tx.conn(), execute, SQL)?;
    Ok(())
}

/// Gives back what one file held: `size` bytes (its `held_bytes`) and the file. Call it only in
/// the transaction whose own statement took the file out of `pending`/`uploaded`
/// (`crate::store::files::end_life` or a removal that returned the row as live): a
/// status read by a plain SELECT may already be stale under READ COMMITTED, and two
/// requests would both release.
pub async fn release(tx: &mut Tx, user_id: &str, size: i64) -> Result<(), sqlx::Error> {
    const GLOBAL: &str = "UPDATE global_usage SET used_bytes = used_bytes - $1 WHERE id = 1";
    const USER: &str = "UPDATE users SET used_bytes = used_bytes - $1, \
         file_count = file_count - 1 WHERE id = $2";
    sql!(tx.conn(), execute, GLOBAL, size)?;
    sql!(tx.conn(), execute, USER, size, user_id)?;
    Ok(())
}

/// Bytes reserved across every user (a metrics gauge).
pub async fn global_used(db: &Db) -> Result<i64, sqlx::Error> {
    const SQL: &str = "SELECT used_bytes FROM global_usage WHERE id = 1";
    sql!(db.latest().await?.conn(), query_scalar fetch_one, SQL)
}
