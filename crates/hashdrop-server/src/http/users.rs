//! Account and session routes: they translate between JSON and `service::accounts`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hashdrop_wire::{
    Credentials, LoginResponse, RefreshRequest, RefreshResponse, UserResponse, VerifyRequest,
};

use super::extract::{ApiJson, AuthUser};
use crate::domain::time::rfc3339;
use crate::domain::Result;
use crate::service::accounts;
use crate::state::AppState;

/// `POST /api/user/register`: 201 with the (unverified) account.
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<impl IntoResponse> {
    let r = accounts::register(&state, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            id: r.id,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            email: r.email,
        }),
    ))
}

/// `PATCH /api/user/verify`: 204 for the right code; one 401 for every wrong case.
pub async fn verify(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<StatusCode> {
    accounts::verify(&state, &req.email, &req.otp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/user/login`.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<Json<LoginResponse>> {
    let s = accounts::login(&state, req).await?;
    Ok(Json(LoginResponse {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
    }))
}

/// `DELETE /api/user`: a valid token and the account's email and password.
pub async fn delete_account(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<Credentials>,
) -> Result<StatusCode> {
    accounts::delete(&state, &user_id, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/token/refresh`.
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<RefreshResponse>> {
    let s = accounts::refresh(&state, &req.refresh_token).await?;
    Ok(Json(RefreshResponse {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
    }))
}

/// `POST /api/token/revoke`: always 204 for a well-formed body, so it reveals nothing.
pub async fn revoke(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode> {
    accounts::revoke(&state, &req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
