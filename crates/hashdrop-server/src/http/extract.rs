//! Request extractors: the authenticated user and JSON bodies with JSON errors.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::domain::Error;
use crate::state::AppState;

/// The user id from a valid `Authorization: Bearer` access token.
#[derive(Debug, Clone)]
pub struct AuthUser(pub String);

/// Verifies the bearer token in `headers`, if any.
pub fn bearer_user(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    state.keys.verify_access_token(token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        bearer_user(state, &parts.headers)
            .map(AuthUser)
            .ok_or(Error::InvalidAccessToken)
    }
}

/// `Json<T>` whose rejections are our JSON 400s instead of axum's plain text.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(Error::Invalid(format!(
                "malformed JSON body: {}",
                rej.body_text()
            ))),
        }
    }
}

/// `Query<T>` whose rejections are our JSON 400s instead of axum's plain text.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(Error::Invalid(format!(
                "malformed query string: {}",
                rej.body_text()
            ))),
        }
    }
}

/// `?id=` query.
#[derive(Debug, serde::Deserialize)]
pub struct IdQuery {
    /// A file id or id prefix.
    pub id: Option<String>,
}
