//! An account's life: register (code by mail), verify, log in, rotate and revoke
//! sessions, delete (with every file).

use hashdrop_wire::Credentials;
use subtle::ConstantTimeEq;

use super::files::{after_end, end_in, Ended};
use crate::domain::account::{self, MAX_EMAIL_LEN, MAX_PASSWORD_CHARS};
use crate::domain::job::{Job, Mail};
use crate::domain::time::now_ms;
use crate::domain::{Error, Result};
use crate::infra::ratelimit::Group;
use crate::state::AppState;
use crate::store::accounts::{
    self as rows, CodeOutcome, Guess, InsertAccountError, NewCode, Rotation,
};
use crate::store::jobs;

const OTP_DOMAIN: &str = "otp";
const REFRESH_DOMAIN: &str = "refresh-token";
const LOGIN_THROTTLE_DOMAIN: &str = "login-throttle";

const TOO_MANY_CODES: &str = "too many wrong codes; register again once the code has expired";

/// A new, unverified account.
#[derive(Debug)]
pub struct Registered {
    /// Id.
    pub id: String,
    /// Normalized address.
    pub email: String,
    /// Creation time (unix ms): the first registration's, for a repeat.
    pub created_at: i64,
    /// Now (unix ms).
    pub updated_at: i64,
}

fn otp_hash(state: &AppState, user_id: &str, otp: &str) -> String {
    state
        .keys
        .keyed_hash(OTP_DOMAIN, format!("{user_id}:{otp}").as_bytes())
}

/// Creates an unverified account and mails a 6-digit code. Registering a
/// still-unverified address again mails a fresh code but proves nothing about the
/// caller, so it changes neither the password (the first one stays until the
/// account is verified or swept) nor the count of wrong guesses: that count starts
/// over only once the previous code has expired, so guessing is capped at
/// `otp_max_attempts` per `otp_ttl_secs` however often someone re-registers.
pub async fn register(state: &AppState, creds: Credentials) -> Result<Registered> {
    let email = account::normalize_email(&creds.email)?;
    account::check_password(&creds.password)?;
    let hash = state.hasher.hash(creds.password).await?;
    let now = now_ms();
    let otp = crate::infra::crypto::generate_otp();
    let taken = Error::Conflict("email already registered");
    let mut tx = state.db.begin().await?;
    let (id, created_at) = match rows::by_email_in(&mut tx, &email).await? {
        Some(a) if a.verified_at.is_some() => return Err(taken),
        Some(a) => (a.id, a.created_at),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            match rows::insert(&mut tx, &id, &email, &hash, now).await {
                Ok(()) => (id, now),
                Err(InsertAccountError::EmailTaken) => return Err(taken),
                Err(InsertAccountError::Db(e)) => return Err(e.into()),
            }
        }
    };
    let code = NewCode {
        user_id: &id,
        code_hash: &otp_hash(state, &id, &otp),
        expires_at: now + state.cfg.auth.otp_ttl_secs as i64 * 1000,
        now,
        max_attempts: state.cfg.auth.otp_max_attempts as i64,
    };
    if let CodeOutcome::Burned { until } = rows::replace_code(&mut tx, code).await? {
        return Err(Error::Limited {
            message: TOO_MANY_CODES,
            code: "otp_attempts_exceeded",
            retry_after: ((until - now) / 1000).max(1) as u64,
        });
    }
    let mail = Job::SendMail(Mail {
        to: email.clone(),
        subject: "Your Hashdrop verification code".into(),
        body: format!(
            "Your Hashdrop verification code is: {otp}\n\nIt expires in {} minutes.\n",
            state.cfg.auth.otp_ttl_secs / 60
        ),
    });
    jobs::enqueue(&mut tx, &mail, state.cfg.jobs.max_attempts, now).await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    Ok(Registered {
        id,
        email,
        created_at,
        updated_at: now,
    })
}

/// Checks a code: success only for the right, live code of an unverified account.
/// A wrong code, an unknown address and an account already verified fail alike
/// (anything else tells a caller which addresses have accounts). Every guess first
/// consumes one of the capped attempts.
pub async fn verify(state: &AppState, email: &str, otp: &str) -> Result<()> {
    let email = account::normalize_email(email)?;
    let invalid = Error::Unauthorized("invalid email or code");
    let Some(acct) = rows::by_email(&state.db, &email).await? else {
        return Err(invalid);
    };
    if acct.verified_at.is_some() {
        return Err(invalid);
    }
    let max_attempts = state.cfg.auth.otp_max_attempts as i64;
    let (code_hash, expires_at) = match rows::take_guess(&state.db, &acct.id, max_attempts).await? {
        Guess::Counted {
            code_hash,
            expires_at,
        } => (code_hash, expires_at),
        Guess::NoAttemptsLeft => {
            return Err(Error::Limited {
                message: TOO_MANY_CODES,
                code: "otp_attempts_exceeded",
                retry_after: state.cfg.auth.otp_ttl_secs,
            })
        }
        Guess::NoCode => return Err(invalid),
    };
    let now = now_ms();
    if expires_at < now {
        return Err(Error::Invalid("verification code expired".into()));
    }
    let otp = otp.trim();
    let expected = otp_hash(state, &acct.id, otp);
    let matches: bool = account::is_well_formed_otp(otp)
        && bool::from(expected.as_bytes().ct_eq(code_hash.as_bytes()));
    if !matches {
        return Err(invalid);
    }
    let mut tx = state.db.begin().await?;
    rows::mark_verified(&mut tx, &acct.id, now).await?;
    tx.commit().await?;
    Ok(())
}

/// The account id and whether it is verified, when email and password match.
/// Hashes even for an unknown email so timing does not reveal which accounts exist.
async fn check_credentials(state: &AppState, creds: Credentials) -> Result<Option<(String, bool)>> {
    let email = creds.email.trim().to_ascii_lowercase();
    // No stored account has a longer address or password (register checks both), so
    // an oversized one is wrong without a database query or a hash over megabytes.
    if email.len() > MAX_EMAIL_LEN || creds.password.chars().count() > MAX_PASSWORD_CHARS {
        return Ok(None);
    }
    match rows::by_email(&state.db, &email).await? {
        Some(a) => {
            let ok = state.hasher.verify(creds.password, a.password_hash).await?;
            Ok(ok.then(|| (a.id, a.verified_at.is_some())))
        }
        None => {
            let _ = state.hasher.hash(creds.password).await?;
            Ok(None)
        }
    }
}

/// A new session.
#[derive(Debug)]
pub struct Session {
    /// Short-lived JWT.
    pub access_token: String,
    /// Single-use refresh token.
    pub refresh_token: String,
}

fn new_session(state: &AppState, user_id: &str, refresh_token: String) -> Result<Session> {
    let access_token = state
        .keys
        .issue_access_token(user_id, state.cfg.auth.access_token_ttl_secs)?;
    Ok(Session {
        access_token,
        refresh_token,
    })
}

/// Logs in. Besides the per-IP limit of its route, attempts against one account are
/// limited whatever addresses they come from, keyed by a keyed hash of the
/// normalized email so no address lands in the limiter's store.
pub async fn login(state: &AppState, creds: Credentials) -> Result<Session> {
    let account = state.keys.keyed_hash(
        LOGIN_THROTTLE_DOMAIN,
        creds.email.trim().to_ascii_lowercase().as_bytes(),
    );
    if state.cfg.rate_limit.enabled {
        let d = state.limiter.check(Group::LoginAccount, &account).await;
        if !d.allowed {
            metrics::counter!("hashdrop_rate_limited_total").increment(1);
            return Err(Error::Limited {
                message: "too many attempts; retry later",
                code: "rate_limited",
                retry_after: d.reset_secs,
            });
        }
    }
    let Some((user_id, verified)) = check_credentials(state, creds).await? else {
        return Err(Error::Unauthorized("invalid email or password"));
    };
    if !verified {
        return Err(Error::Unauthorized("account not verified"));
    }
    let token = crate::infra::crypto::random_hex(32);
    let now = now_ms();
    let token_hash = state.keys.keyed_hash(REFRESH_DOMAIN, token.as_bytes());
    let expires_at = now + state.cfg.auth.refresh_token_ttl_secs as i64 * 1000;
    rows::insert_session(&state.db, &token_hash, &user_id, now, expires_at).await?;
    new_session(state, &user_id, token)
}

/// Deletes the caller's account, which needs a valid token *and* its email and
/// password. Its files end as an owner's delete would end them, in the same
/// transaction as the account row; their objects go by durable jobs.
pub async fn delete(state: &AppState, user_id: &str, creds: Credentials) -> Result<()> {
    match check_credentials(state, creds).await? {
        Some((id, _)) if id == user_id => {}
        _ => return Err(Error::Unauthorized("invalid email or password")),
    }
    let mut tx = state.db.begin().await?;
    let ids = end_in(state, &mut tx, Ended::AllOf { owner: user_id }).await?;
    rows::remove(&mut tx, user_id).await?;
    tx.commit().await?;
    after_end(state, &ids).await;
    Ok(())
}

/// Single-use rotation of a refresh token. Presenting an already rotated token is
/// treated as theft: every session of the account is revoked.
pub async fn refresh(state: &AppState, refresh_token: &str) -> Result<Session> {
    let hash = state
        .keys
        .keyed_hash(REFRESH_DOMAIN, refresh_token.trim().as_bytes());
    let now = now_ms();
    let token = crate::infra::crypto::random_hex(32);
    let successor = state.keys.keyed_hash(REFRESH_DOMAIN, token.as_bytes());
    let expires_at = now + state.cfg.auth.refresh_token_ttl_secs as i64 * 1000;
    let mut tx = state.db.begin().await?;
    let rotation = rows::rotate_session(&mut tx, &hash, &successor, now, expires_at).await?;
    tx.commit().await?;
    match rotation {
        Rotation::Rotated { user_id } => new_session(state, &user_id, token),
        Rotation::Reused { user_id } => {
            tracing::warn!(
                user_id,
                "refresh token reuse detected; revoked all sessions"
            );
            Err(Error::Unauthorized(
                "refresh token invalid, expired or revoked",
            ))
        }
        Rotation::Invalid => Err(Error::Unauthorized(
            "refresh token invalid, expired or revoked",
        )),
    }
}

/// Revokes a refresh token; an unknown one changes nothing (and says nothing).
pub async fn revoke(state: &AppState, refresh_token: &str) -> Result<()> {
    let hash = state
        .keys
        .keyed_hash(REFRESH_DOMAIN, refresh_token.trim().as_bytes());
    rows::revoke_session(&state.db, &hash, now_ms()).await?;
    Ok(())
}
