//! Accounts: `users`, their one-time codes (`otps`) and sessions (`refresh_tokens`).

use super::{on_conn, Db, Tx};

/// An account as sign-in and sign-up see it.
#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    /// Id.
    pub id: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// When the address was verified (unix ms); `None` until then.
    pub verified_at: Option<i64>,
    /// Creation time (unix ms).
    pub created_at: i64,
}

const ACCOUNT_BY_EMAIL: &str =
    "SELECT id, password_hash, verified_at, created_at FROM users WHERE email = $1";

/// The account of `email` (normalized), inside a transaction.
pub async fn by_email_in(tx: &mut Tx, email: &str) -> Result<Option<Account>, sqlx::Error> {
    on_conn!(tx.conn(), |c| {
        sqlx::query_as(ACCOUNT_BY_EMAIL)
            .bind(email)
            .fetch_optional(&mut *c)
            .await
    })
}

/// The account of `email` (normalized), from the primary.
pub async fn by_email(db: &Db, email: &str) -> Result<Option<Account>, sqlx::Error> {
    let mut c = db.latest().await?;
    on_conn!(c.conn(), |c| {
        sqlx::query_as(ACCOUNT_BY_EMAIL)
            .bind(email)
            .fetch_optional(&mut *c)
            .await
    })
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InsertAccountError {
    /// Someone holds the address already.
    #[error("email already registered")]
    EmailTaken,
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates an unverified account.
pub async fn insert(
    tx: &mut Tx,
    id: &str,
    email: &str,
    password_hash: &str,
    now: i64,
) -> Result<(), InsertAccountError> {
    const SQL: &str = "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4)";
    let r = on_conn!(tx.conn(), |c| {
        sqlx::query(SQL)
            .bind(id)
            .bind(email)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    });
    match r {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Err(InsertAccountError::EmailTaken)
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks the account verified and drops its code, in one transaction.
pub async fn mark_verified(tx: &mut Tx, user_id: &str, now: i64) -> Result<(), sqlx::Error> {
    on_conn!(tx.conn(), |c| {
        sqlx::query("UPDATE users SET verified_at = $1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user_id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM otps WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Deletes the account row (its files, codes and sessions go by cascade).
pub async fn remove(tx: &mut Tx, user_id: &str) -> Result<(), sqlx::Error> {
    on_conn!(tx.conn(), |c| {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Deletes every account (the dev-mode reset; run after their files are removed).
pub async fn remove_every(tx: &mut Tx) -> Result<(), sqlx::Error> {
    on_conn!(tx.conn(), |c| {
        sqlx::query("DELETE FROM users")
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// A new verification code.
#[derive(Debug, Clone, Copy)]
pub struct NewCode<'a> {
    /// The account.
    pub user_id: &'a str,
    /// Keyed hash of the code.
    pub code_hash: &'a str,
    /// Expiry (unix ms).
    pub expires_at: i64,
    /// Now (unix ms).
    pub now: i64,
    /// Wrong guesses allowed per code lifetime.
    pub max_attempts: i64,
}

/// What happened to the account's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOutcome {
    /// The new code is stored.
    Stored,
    /// The live code has used up its attempts; it may be replaced once it expires
    /// at this time (unix ms).
    Burned {
        /// Expiry of the burned code.
        until: i64,
    },
}

/// Stores a new code for the account. The attempt count carries over while the old
/// code is live and starts over once it has expired, and a live code with no
/// attempts left is not replaced: re-registering never buys more guesses. One
/// statement replaces the code, so a guess counted concurrently is not lost.
pub async fn replace_code(tx: &mut Tx, code: NewCode<'_>) -> Result<CodeOutcome, sqlx::Error> {
    const REPLACE: &str = "UPDATE otps SET code_hash = $2, expires_at = $3, \
         attempts = CASE WHEN expires_at > $4 THEN attempts ELSE 0 END \
         WHERE user_id = $1 AND (expires_at <= $4 OR attempts < $5)";
    const BURNED: &str = "SELECT expires_at FROM otps WHERE user_id = $1";
    const INSERT: &str =
        "INSERT INTO otps (user_id, code_hash, expires_at, attempts) VALUES ($1, $2, $3, 0)";
    on_conn!(tx.conn(), |c| {
        let replaced = sqlx::query(REPLACE)
            .bind(code.user_id)
            .bind(code.code_hash)
            .bind(code.expires_at)
            .bind(code.now)
            .bind(code.max_attempts)
            .execute(&mut *c)
            .await?;
        if replaced.rows_affected() == 1 {
            return Ok(CodeOutcome::Stored);
        }
        let burned: Option<i64> = sqlx::query_scalar(BURNED)
            .bind(code.user_id)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(until) = burned {
            return Ok(CodeOutcome::Burned { until });
        }
        sqlx::query(INSERT)
            .bind(code.user_id)
            .bind(code.code_hash)
            .bind(code.expires_at)
            .execute(&mut *c)
            .await?;
        Ok(CodeOutcome::Stored)
    })
}

/// A guess's view of the stored code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guess {
    /// One attempt was consumed; compare against this code.
    Counted {
        /// Keyed hash of the code.
        code_hash: String,
        /// Its expiry (unix ms).
        expires_at: i64,
    },
    /// The code has no attempts left.
    NoAttemptsLeft,
    /// The account has no code.
    NoCode,
}

/// Consumes one attempt of the account's code in one conditional UPDATE, so
/// parallel guessing cannot get more tries than `max_attempts`.
pub async fn take_guess(db: &Db, user_id: &str, max_attempts: i64) -> Result<Guess, sqlx::Error> {
    const TAKE: &str = "UPDATE otps SET attempts = attempts + 1 \
         WHERE user_id = $1 AND attempts < $2 RETURNING code_hash, expires_at";
    const EXISTS: &str = "SELECT COUNT(*) FROM otps WHERE user_id = $1";
    let mut c = db.writer().await?;
    on_conn!(c.conn(), |c| {
        let row: Option<(String, i64)> = sqlx::query_as(TAKE)
            .bind(user_id)
            .bind(max_attempts)
            .fetch_optional(&mut *c)
            .await?;
        if let Some((code_hash, expires_at)) = row {
            return Ok(Guess::Counted {
                code_hash,
                expires_at,
            });
        }
        let n: i64 = sqlx::query_scalar(EXISTS)
            .bind(user_id)
            .fetch_one(&mut *c)
            .await?;
        Ok(if n > 0 {
            Guess::NoAttemptsLeft
        } else {
            Guess::NoCode
        })
    })
}

/// A session to store.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// Keyed hash of the refresh token.
    pub token_hash: &'a str,
    /// The account.
    pub user_id: &'a str,
    /// Now (unix ms).
    pub now: i64,
    /// Expiry (unix ms).
    pub expires_at: i64,
}

const INSERT_SESSION: &str = "INSERT INTO refresh_tokens (token_hash, user_id, created_at, \
     expires_at) VALUES ($1, $2, $3, $4)";

/// Stores a new session (login).
pub async fn insert_session(db: &Db, s: NewSession<'_>) -> Result<(), sqlx::Error> {
    let mut c = db.writer().await?;
    on_conn!(c.conn(), |c| {
        sqlx::query(INSERT_SESSION)
            .bind(s.token_hash)
            .bind(s.user_id)
            .bind(s.now)
            .bind(s.expires_at)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is revoked and its successor stored in its place.
    Rotated {
        /// Its account.
        user_id: String,
    },
    /// The token was already rotated once: every session of the account is now
    /// revoked (a stolen token was replayed, or its rightful holder was beaten).
    Reused {
        /// Its account.
        user_id: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Single-use rotation of the session `token_hash` to a new one, `successor_hash`,
/// expiring at `expires_at`.
pub async fn rotate_session(
    tx: &mut Tx,
    token_hash: &str,
    successor_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<Rotation, sqlx::Error> {
    const ROTATE: &str = "UPDATE refresh_tokens SET revoked_at = $1, replaced_by = $2 \
         WHERE token_hash = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING user_id";
    const REPLACED: &str = "SELECT user_id, replaced_by FROM refresh_tokens WHERE token_hash = $1";
    const REVOKE_ALL: &str = "UPDATE refresh_tokens SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL";
    on_conn!(tx.conn(), |c| {
        let rotated: Option<String> = sqlx::query_scalar(ROTATE)
            .bind(now)
            .bind(successor_hash)
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(user_id) = rotated {
            sqlx::query(INSERT_SESSION)
                .bind(successor_hash)
                .bind(&user_id)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *c)
                .await?;
            return Ok(Rotation::Rotated { user_id });
        }
        let row: Option<(String, Option<String>)> = sqlx::query_as(REPLACED)
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?;
        let Some((user_id, Some(_))) = row else {
            return Ok(Rotation::Invalid);
        };
        sqlx::query(REVOKE_ALL)
            .bind(now)
            .bind(&user_id)
            .execute(&mut *c)
            .await?;
        Ok(Rotation::Reused { user_id })
    })
}

/// Revokes one session; unknown tokens change nothing.
pub async fn revoke_session(db: &Db, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE refresh_tokens SET revoked_at = $1 \
         WHERE token_hash = $2 AND revoked_at IS NULL";
    let mut c = db.writer().await?;
    on_conn!(c.conn(), |c| {
        sqlx::query(SQL)
            .bind(now)
            .bind(token_hash)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Removes sessions expired by `now` or revoked before `revoked_before`.
pub async fn purge_sessions(db: &Db, now: i64, revoked_before: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM refresh_tokens \
         WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $2)";
    let mut c = db.writer().await?;
    on_conn!(c.conn(), |c| {
        sqlx::query(SQL)
            .bind(now)
            .bind(revoked_before)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    })
}

/// Removes accounts never verified and created before `cutoff`.
pub async fn purge_unverified(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    super::write_one(
        db,
        "DELETE FROM users WHERE verified_at IS NULL AND created_at < $1",
        cutoff,
    )
    .await
}

/// Removes codes expired before `now`.
pub async fn purge_codes(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    super::write_one(db, "DELETE FROM otps WHERE expires_at < $1", now).await
}
