//! One error type for every handler, mapped to HTTP in exactly one place.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::ErrorBody;

/// Everything a handler can fail with. Variants carry only client-safe text;
/// `Internal` keeps its cause for the log and answers an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// 401: wrong credentials (password, OTP, refresh token).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 401 with code `invalid_token`: the access token is missing, malformed or
    /// expired. Distinct so a client knows a refresh may help, whatever the wording.
    #[error("missing or invalid access token")]
    InvalidAccessToken,
    /// 403: forbidden (bad signature, quota, dev-only route).
    #[error("{message}")]
    Forbidden {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
    },
    /// 404: not found, or not yours (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(&'static str),
    /// 409: conflict.
    #[error("{0}")]
    Conflict(&'static str),
    /// 410: the share link expired or used up.
    #[error("{message}")]
    Gone {
        /// Client-facing text.
        message: &'static str,
        /// Stable code (`link_expired`, `download_cap_reached`).
        code: &'static str,
    },
    /// 408: the client stopped sending a request body.
    #[error("{0}")]
    RequestTimeout(&'static str),
    /// 413: too large.
    #[error("{0}")]
    TooLarge(&'static str),
    /// 429: rate or download limit, with seconds to wait.
    #[error("{message}")]
    TooManyRequests {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// 503: temporarily unavailable (global quota, draining).
    #[error("{message}")]
    Unavailable {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
    },
    /// 500: logged with its cause, answered opaquely.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &str, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.to_string()),
            ApiError::InvalidAccessToken => {
                (StatusCode::UNAUTHORIZED, "invalid_token", self.to_string())
            }
            ApiError::Forbidden { message, code } => {
                (StatusCode::FORBIDDEN, code, message.to_string())
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.to_string()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.to_string()),
            ApiError::Gone { message, code } => (StatusCode::GONE, code, message.to_string()),
            ApiError::RequestTimeout(m) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                m.to_string(),
            ),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m.to_string()),
            ApiError::TooManyRequests { message, code, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, code, message.to_string())
            }
            ApiError::Unavailable { message, code } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message.to_string())
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error".to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            // The cause (possibly SQL text) goes to the log only.
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let (status, code, error) = self.parts();
        let mut resp = (
            status,
            Json(ErrorBody {
                error,
                code: code.to_string(),
            }),
        )
            .into_response();
        match &self {
            ApiError::TooManyRequests { retry_after, .. } => {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(*retry_after));
            }
            ApiError::Unavailable { .. } => {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("30"));
            }
            _ => {}
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
