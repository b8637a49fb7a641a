//! Accounts: `users`, their one-time codes (`otps`) and sessions (`refresh_tokens`).

use super::{sql, write_one, Db, Tx};

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
    sql!(tx.conn(), query_as fetch_optional, ACCOUNT_BY_EMAIL, email)
}

/// The account of `email` (normalized), from the primary.
pub async fn by_email(db: &Db, email: &str) -> Result<Option<Account>, sqlx::Error> {
    sql!(db.latest().await?.conn(), query_as fetch_optional, ACCOUNT_BY_EMAIL, email)
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
    match sql!(tx.conn(), execute, SQL, id, email, password_hash, now) {
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
    const VERIFIED: &str = "UPDATE users SET verified_at = $1, updated_at = $1 WHERE id = $2";
    sql!(tx.conn(), execute, VERIFIED, now, user_id)?;
    sql!(
        tx.conn(),
        execute,
        "DELETE FROM otps WHERE user_id = $1",
        user_id
    )?;
    Ok(())
}

/// Deletes the account row (its files, codes and sessions go by cascade).
pub async fn remove(tx: &mut Tx, user_id: &str) -> Result<(), sqlx::Error> {
    sql!(
        tx.conn(),
        execute,
        "DELETE FROM users WHERE id = $1",
        user_id
    )?;
    Ok(())
}

/// Deletes every account (the dev-mode reset; run after their files are removed).
pub async fn remove_every(tx: &mut Tx) -> Result<(), sqlx::Error> {
    sql!(tx.conn(), execute, "DELETE FROM users")?;
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
    let replaced = sql!(
        tx.conn(),
        execute,
        REPLACE,
        code.user_id,
        code.code_hash,
        code.expires_at,
        code.now,
        code.max_attempts
    )?;
    if replaced == 1 {
        return Ok(CodeOutcome::Stored);
    }
    let burned: Option<i64> = sql!(tx.conn(), query_scalar fetch_optional, BURNED, code.user_id)?;
    if let Some(until) = burned {
        return Ok(CodeOutcome::Burned { until });
    }
    sql!(
        tx.conn(),
        execute,
        INSERT,
        code.user_id,
        code.code_hash,
        code.expires_at
    )?;
    Ok(CodeOutcome::Stored)
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
    let row: Option<(String, i64)> =
        sql!(c.conn(), query_as fetch_optional, TAKE, user_id, max_attempts)?;
    if let Some((code_hash, expires_at)) = row {
        return Ok(Guess::Counted {
            code_hash,
            expires_at,
        });
    }
    let n: i64 = sql!(c.conn(), query_scalar fetch_one, EXISTS, user_id)?;
    Ok(if n > 0 {
        Guess::NoAttemptsLeft
    } else {
        Guess::NoCode
    })
}

const INSERT_SESSION: &str = "INSERT INTO refresh_tokens (token_hash, user_id, created_at, \
     expires_at) VALUES ($1, $2, $3, $4)";

/// Stores a new session (login): the keyed hash of its refresh token, its account
/// and its expiry (unix ms).
pub async fn insert_session(
    db: &Db,
    token_hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let mut c = db.writer().await?;
    sql!(
        c.conn(),
        execute,
        INSERT_SESSION,
        token_hash,
        user_id,
        now,
        expires_at
    )?;
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
    let rotated: Option<String> = sql!(
        tx.conn(),
        query_scalar fetch_optional,
        ROTATE,
        now,
        successor_hash,
        token_hash
    )?;
    if let Some(user_id) = rotated {
        let insert = INSERT_SESSION;
        sql!(
            tx.conn(),
            execute,
            insert,
            successor_hash,
            &user_id,
            now,
            expires_at
        )?;
        return Ok(Rotation::Rotated { user_id });
    }
    let row: Option<(String, Option<String>)> =
        sql!(tx.conn(), query_as fetch_optional, REPLACED, token_hash)?;
    let Some((user_id, Some(_))) = row else {
        return Ok(Rotation::Invalid);
    };
    sql!(tx.conn(), execute, REVOKE_ALL, now, &user_id)?;
    Ok(Rotation::Reused { user_id })
}

/// Revokes one session; unknown tokens change nothing.
pub async fn revoke_session(db: &Db, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE refresh_tokens SET revoked_at = $1 \
         WHERE token_hash = $2 AND revoked_at IS NULL";
    sql!(db.writer().await?.conn(), execute, SQL, now, token_hash)?;
    Ok(())
}

/// Removes sessions expired by `now` or revoked before `revoked_before`.
pub async fn purge_sessions(db: &Db, now: i64, revoked_before: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM refresh_tokens \
         WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $2)";
    sql!(db.writer().await?.conn(), execute, SQL, now, revoked_before)
}

/// Removes accounts never verified and created before `cutoff`.
pub async fn purge_unverified(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    write_one(
        db,
        "DELETE FROM users WHERE verified_at IS NULL AND created_at < $1",
        cutoff,
    )
    .await
}

/// Removes codes expired before `now`.
pub async fn purge_codes(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    write_one(db, "DELETE FROM otps WHERE expires_at < $1", now).await
}
