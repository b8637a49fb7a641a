//! The one place a domain error becomes an HTTP response: a status, a stable code
//! and a JSON body (`hashdrop_wire::ErrorBody`), plus `Retry-After` where waiting
//! helps.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::ErrorBody;

use crate::domain::Error;

fn parts(e: &Error) -> (StatusCode, &str, String) {
    match e {
        Error::Invalid(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
        Error::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.to_string()),
        Error::InvalidAccessToken => (StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()),
        Error::Forbidden { message, code } => (StatusCode::FORBIDDEN, code, message.to_string()),
        Error::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.to_string()),
        Error::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.to_string()),
        Error::Gone { message, code } => (StatusCode::GONE, code, message.to_string()),
        Error::Stalled(m) => (
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            m.to_string(),
        ),
        Error::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.to_string()),
        Error::Limited { message, code, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, code, message.to_string())
        }
        Error::Unavailable { message, code } => {
            (StatusCode::SERVICE_UNAVAILABLE, code, message.to_string())
        }
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error".to_string(),
        ),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(e) = &self {
            // The cause (possibly SQL text) goes to the log only.
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let (status, code, error) = parts(&self);
        let mut resp = (
            status,
            Json(ErrorBody {
                error,
                code: code.to_string(),
            }),
        )
            .into_response();
        match &self {
            Error::Limited { retry_after, .. } => {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(*retry_after));
            }
            Error::Unavailable { .. } => {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("30"));
            }
            _ => {}
        }
        resp
    }
}
