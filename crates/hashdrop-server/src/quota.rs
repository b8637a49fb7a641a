//! Storage quotas as plain functions over a transaction.
//!
//! `users.used_bytes/file_count` and the single `global_usage` row count every
//! `pending` and `uploaded` file at its declared encrypted size. [`reserve`] checks
//! and reserves with conditional UPDATEs (`... WHERE used + n <= limit`), so two
//! concurrent reservations can never both squeeze under a limit: SQLite runs one
//! writer at a time, and PostgreSQL re-checks the WHERE clause on the locked row.
//! Every path locks the global row before the user row, so they cannot deadlock.

use sqlx::AnyConnection;

use crate::config::Limits;
use crate::error::ApiError;

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

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::GlobalFull => ApiError::Unavailable {
                message: "global storage limit reached; uploads are temporarily disabled",
                code: "global_quota_exceeded",
            },
            QuotaError::UserFull => ApiError::Forbidden {
                message: "storage quota exceeded",
                code: "quota_exceeded",
            },
            QuotaError::NoSuchUser => ApiError::Unauthorized("account no longer exists"),
            QuotaError::Db(e) => e.into(),
        }
    }
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// Reserves `size` bytes and one file for `user_id`. The caller's transaction must
/// be rolled back (dropped) when this fails, undoing a partial reservation.
pub async fn reserve(
    tx: &mut AnyConnection,
    user_id: &str,
    size: i64,
    limits: &Limits,
    now: i64,
) -> Result<(), QuotaError> {
    let global = sqlx::query(
        "UPDATE global_usage SET used_bytes = used_bytes + $1 WHERE id = 1 AND used_bytes + $1 <= $2",
    )
    .bind(size)
    .bind(clamp(limits.global_bytes))
    .execute(&mut *tx)
    .await?;
    if global.rows_affected() == 0 {
        return Err(QuotaError::GlobalFull);
    }
    let user = sqlx::query(
        "UPDATE users SET used_bytes = used_bytes + $1, file_count = file_count + 1, updated_at = $2 \
         WHERE id = $3 AND verified_at IS NOT NULL AND used_bytes + $1 <= $4 AND file_count + 1 <= $5",
    )
    .bind(size)
    .bind(now)
    .bind(user_id)
    .bind(clamp(limits.user_bytes))
    .bind(clamp(limits.user_files))
    .execute(&mut *tx)
    .await?;
    if user.rows_affected() == 0 {
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE id = $1 AND verified_at IS NOT NULL")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match exists {
            Some(_) => QuotaError::UserFull,
            None => QuotaError::NoSuchUser,
        });
    }
    Ok(())
}

/// Locks the global usage row. Every path that changes usage takes it first, so
/// paths that then lock file or user rows cannot deadlock each other.
pub async fn lock_global(tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE global_usage SET used_bytes = used_bytes WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Gives back what [`reserve`] took for one file of `size` bytes. Call it only in
/// the transaction whose own statement took the file out of `pending`/`uploaded`
/// (an `UPDATE ... WHERE status IN (...) RETURNING` or `DELETE ... RETURNING`
/// that returned the row): a status read by a plain SELECT may already be stale
/// under READ COMMITTED, and two requests would both release.
pub async fn release(tx: &mut AnyConnection, user_id: &str, size: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE global_usage SET used_bytes = used_bytes - $1 WHERE id = 1")
        .bind(size)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE users SET used_bytes = used_bytes - $1, file_count = file_count - 1 WHERE id = $2",
    )
    .bind(size)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
