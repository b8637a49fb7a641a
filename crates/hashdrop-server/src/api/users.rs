//! Accounts and sessions: register, verify, login, delete, refresh, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hashdrop_wire::{
    Credentials, LoginResponse, RefreshRequest, RefreshResponse, UserResponse, VerifyRequest,
};

use super::auth::{ApiJson, AuthUser};
use crate::db::{now_ms, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::jobs;
use crate::state::AppState;

const OTP_DOMAIN: &str = "otp";
const REFRESH_DOMAIN: &str = "refresh-token";

fn normalize_email(email: &str) -> ApiResult<String> {
    let e = email.trim().to_ascii_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(ApiError::BadRequest("invalid email address".into()))
    }
}

fn check_password(p: &str) -> ApiResult<()> {
    let n = p.chars().count();
    if !(8..=128).contains(&n) {
        return Err(ApiError::BadRequest(
            "password must be 8 to 128 characters".into(),
        ));
    }
    Ok(())
}

fn otp_hash(state: &AppState, user_id: &str, otp: &str) -> String {
    state
        .keys
        .keyed_hash(OTP_DOMAIN, format!("{user_id}:{otp}").as_bytes())
}

/// `POST /api/user/register`: creates an unverified account and mails a 6-digit
/// code. Registering a still-unverified address again mails a fresh code but proves
/// nothing about the caller, so it changes neither the password (the first one stays
/// until the account is verified or swept) nor the count of wrong guesses: that
/// count starts over only once the previous code has expired, so guessing is capped
/// at `otp_max_attempts` per `otp_ttl_secs` however often someone re-registers.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let email = normalize_email(&req.email)?;
    check_password(&req.password)?;
    let hash = state.hasher.hash(req.password).await?;
    let now = now_ms();
    let otp = crate::crypto::generate_otp();
    let mut tx = state.db.begin().await?;
    let existing: Option<(String, Option<i64>, i64)> =
        sqlx::query_as("SELECT id, verified_at, created_at FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let (id, created_at) = match existing {
        Some((_, Some(_), _)) => return Err(ApiError::Conflict("email already registered")),
        Some((id, None, created_at)) => (id, created_at),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            let r = sqlx::query(
                "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(&id)
            .bind(&email)
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await;
            if let Err(e) = r {
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation())
                {
                    return Err(ApiError::Conflict("email already registered"));
                }
                return Err(e.into());
            }
            (id, now)
        }
    };
    let code_hash = otp_hash(&state, &id, &otp);
    let expires_at = now + state.cfg.auth.otp_ttl_secs as i64 * 1000;
    let max_attempts = state.cfg.auth.otp_max_attempts as i64;
    // One statement replaces the code, so a guess counted concurrently is not lost:
    // the attempt count carries over while the old code is live and resets once it
    // has expired; a live code with no attempts left is not replaced at all.
    let replaced = sqlx::query(
        "UPDATE otps SET code_hash = $2, expires_at = $3, \
         attempts = CASE WHEN expires_at > $4 THEN attempts ELSE 0 END \
         WHERE user_id = $1 AND (expires_at <= $4 OR attempts < $5)",
    )
    .bind(&id)
    .bind(&code_hash)
    .bind(expires_at)
    .bind(now)
    .bind(max_attempts)
    .execute(&mut *tx)
    .await?;
    if replaced.rows_affected() == 0 {
        let burned: Option<(i64,)> =
            sqlx::query_as("SELECT expires_at FROM otps WHERE user_id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((burned_until,)) = burned {
            return Err(ApiError::TooManyRequests {
                message: "too many wrong codes; register again once the code has expired",
                code: "otp_attempts_exceeded",
                retry_after: ((burned_until - now) / 1000).max(1) as u64,
            });
        }
        sqlx::query(
            "INSERT INTO otps (user_id, code_hash, expires_at, attempts) VALUES ($1, $2, $3, 0)",
        )
        .bind(&id)
        .bind(&code_hash)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    }
    let mail = crate::mailer::Mail {
        to: email.clone(),
        subject: "Your Hashdrop verification code".into(),
        body: format!(
            "Your Hashdrop verification code is: {otp}\n\nIt expires in {} minutes.\n",
            state.cfg.auth.otp_ttl_secs / 60
        ),
    };
    jobs::enqueue(
        &mut tx,
        jobs::KIND_SEND_MAIL,
        &serde_json::to_value(&mail).map_err(anyhow::Error::from)?,
        None,
        state.cfg.jobs.max_attempts,
    )
    .await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            id,
            created_at: rfc3339(created_at),
            updated_at: rfc3339(now),
            email,
        }),
    ))
}

/// `PATCH /api/user/verify`: checks the code; 204 only for the right code of an
/// unverified account, the same 401 for a wrong code, an unknown address and an
/// account already verified. Every guess first consumes one of the
/// capped attempts in a single conditional UPDATE, so parallel guessing cannot get
/// more tries than the cap.
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<StatusCode> {
    let email = normalize_email(&req.email)?;
    let invalid = ApiError::Unauthorized("invalid email or code");
    let user: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT id, verified_at FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(state.db.pool())
            .await?;
    // An unknown and an already verified address answer exactly like a wrong code:
    // anything else tells a caller which addresses have accounts.
    let Some((user_id, None)) = user else {
        return Err(invalid);
    };
    let otp = req.otp.trim();
    let well_formed = otp.len() == 6 && otp.bytes().all(|b| b.is_ascii_digit());
    let now = now_ms();
    let row: Option<(String, i64)> = sqlx::query_as(
        "UPDATE otps SET attempts = attempts + 1 WHERE user_id = $1 AND attempts < $2 \
         RETURNING code_hash, expires_at",
    )
    .bind(&user_id)
    .bind(state.cfg.auth.otp_max_attempts as i64)
    .fetch_optional(state.db.pool())
    .await?;
    let Some((code_hash, expires_at)) = row else {
        let exists: Option<(i64,)> = sqlx::query_as("SELECT attempts FROM otps WHERE user_id = $1")
            .bind(&user_id)
            .fetch_optional(state.db.pool())
            .await?;
        return Err(match exists {
            Some(_) => ApiError::TooManyRequests {
                message: "too many wrong codes; register again once the code has expired",
                code: "otp_attempts_exceeded",
                retry_after: state.cfg.auth.otp_ttl_secs,
            },
            None => invalid,
        });
    };
    if expires_at < now {
        return Err(ApiError::BadRequest("verification code expired".into()));
    }
    let expected = otp_hash(&state, &user_id, otp);
    let matches: bool = {
        use subtle::ConstantTimeEq;
        well_formed && expected.as_bytes().ct_eq(code_hash.as_bytes()).into()
    };
    if !matches {
        return Err(invalid);
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET verified_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM otps WHERE user_id = $1")
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks email + password; `None` when either is wrong. Runs a hash even for an
/// unknown email so timing does not reveal which accounts exist.
async fn check_credentials(
    state: &AppState,
    creds: Credentials,
) -> ApiResult<Option<(String, Option<i64>)>> {
    let email = creds.email.trim().to_ascii_lowercase();
    // No stored account has a longer address or password (register checks both), so
    // an oversized one is wrong without a database query or a hash over megabytes.
    if email.len() > 254 || creds.password.chars().count() > 128 {
        return Ok(None);
    }
    let user: Option<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT id, password_hash, verified_at FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(state.db.pool())
            .await?;
    match user {
        Some((id, hash, verified)) => {
            if state.hasher.verify(creds.password, hash).await? {
                Ok(Some((id, verified)))
            } else {
                Ok(None)
            }
        }
        None => {
            let _ = state.hasher.hash(creds.password).await?;
            Ok(None)
        }
    }
}

async fn issue_refresh_token(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
) -> ApiResult<String> {
    let token = crate::crypto::random_hex(32);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(state.keys.keyed_hash(REFRESH_DOMAIN, token.as_bytes()))
    .bind(user_id)
    .bind(now)
    .bind(now + state.cfg.auth.refresh_token_ttl_secs as i64 * 1000)
    .execute(conn)
    .await?;
    Ok(token)
}

const LOGIN_THROTTLE_DOMAIN: &str = "login-throttle";

/// `POST /api/user/login`. Besides the per-IP limit of its route, attempts against
/// one account are limited whatever addresses they come from (`login_account`),
/// keyed by a keyed hash of the normalized email so no address lands in Redis.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<Json<LoginResponse>> {
    let account = state.keys.keyed_hash(
        LOGIN_THROTTLE_DOMAIN,
        req.email.trim().to_ascii_lowercase().as_bytes(),
    );
    crate::ratelimit::check_key(&state, crate::ratelimit::Group::LoginAccount, &account).await?;
    let Some((user_id, verified)) = check_credentials(&state, req).await? else {
        return Err(ApiError::Unauthorized("invalid email or password"));
    };
    if verified.is_none() {
        return Err(ApiError::Unauthorized("account not verified"));
    }
    let mut conn = state.db.pool().acquire().await?;
    let refresh_token = issue_refresh_token(&state, &mut conn, &user_id).await?;
    let access_token = state
        .keys
        .issue_access_token(&user_id, state.cfg.auth.access_token_ttl_secs)?;
    Ok(Json(LoginResponse {
        access_token,
        refresh_token,
    }))
}

/// `DELETE /api/user`: needs a valid token *and* the account's email and password.
/// Rows go in one transaction; objects are deleted by durable jobs.
pub async fn delete_account(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<Credentials>,
) -> ApiResult<StatusCode> {
    match check_credentials(&state, req).await? {
        Some((id, _)) if id == user_id => {}
        _ => return Err(ApiError::Unauthorized("invalid email or password")),
    }
    let mut tx = state.db.begin().await?;
    // Lock the global row first, as every quota path does. On PostgreSQL this also
    // waits out any presign in flight for this user, so the usage read next (a new
    // snapshot under READ COMMITTED) includes it.
    crate::quota::lock_global(&mut tx).await?;
    let used: Option<(i64,)> = sqlx::query_as("SELECT used_bytes FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((used,)) = used else {
        return Err(ApiError::Unauthorized("invalid email or password"));
    };
    sqlx::query("UPDATE global_usage SET used_bytes = used_bytes - $1 WHERE id = 1")
        .bind(used)
        .execute(&mut *tx)
        .await?;
    let files: Vec<(String, String)> =
        sqlx::query_as("SELECT id, object_key FROM files WHERE user_id = $1")
            .bind(&user_id)
            .fetch_all(&mut *tx)
            .await?;
    for (_, key) in &files {
        jobs::enqueue_blob_delete(&mut tx, key, state.cfg.jobs.max_attempts).await?;
    }
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    let ids: Vec<String> = files.into_iter().map(|(id, _)| id).collect();
    state.cache.invalidate(&ids).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/token/refresh`: single-use rotation. Presenting an already rotated
/// token is treated as theft: every session of the account is revoked.
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<RefreshResponse>> {
    let invalid = ApiError::Unauthorized("refresh token invalid, expired or revoked");
    let hash = state
        .keys
        .keyed_hash(REFRESH_DOMAIN, req.refresh_token.trim().as_bytes());
    let now = now_ms();
    let new_token = crate::crypto::random_hex(32);
    let new_hash = state.keys.keyed_hash(REFRESH_DOMAIN, new_token.as_bytes());
    let mut tx = state.db.begin().await?;
    let rotated: Option<(String,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET revoked_at = $1, replaced_by = $2 \
         WHERE token_hash = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING user_id",
    )
    .bind(now)
    .bind(&new_hash)
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id,)) = rotated else {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT user_id, replaced_by FROM refresh_tokens WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((user_id, Some(_))) = row {
            tracing::warn!(
                user_id,
                "refresh token reuse detected; revoking all sessions"
            );
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        return Err(invalid);
    };
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&new_hash)
    .bind(&user_id)
    .bind(now)
    .bind(now + state.cfg.auth.refresh_token_ttl_secs as i64 * 1000)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let access_token = state
        .keys
        .issue_access_token(&user_id, state.cfg.auth.access_token_ttl_secs)?;
    Ok(Json(RefreshResponse {
        access_token,
        refresh_token: new_token,
    }))
}

/// `POST /api/token/revoke`: always 204 for a well-formed body, so it reveals nothing.
pub async fn revoke(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let hash = state
        .keys
        .keyed_hash(REFRESH_DOMAIN, req.refresh_token.trim().as_bytes());
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&hash)
    .execute(state.db.pool())
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
