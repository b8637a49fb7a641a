//! What can go wrong with a call: the server refused it, no answer came, or the
//! answer was not what the endpoint returns.

use std::fmt;

use hashdrop_wire::ErrorBody;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server (or a proxy in front of it) answered with a status the endpoint
    /// does not succeed with.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// No answer: the request could not be built or sent, the connection failed or
    /// timed out, or the body was cut off.
    #[error("no answer from the server: {0}")]
    Transport(#[source] reqwest::Error),
    /// A success status with a body this endpoint does not return: usually a server
    /// of another version, or something else listening at that URL.
    #[error("unexpected answer for {path}: {detail}")]
    Unexpected {
        /// Path of the URL that answered.
        path: String,
        /// What did not fit.
        detail: String,
    },
}

impl Error {
    /// The refusal, when the server answered one.
    pub fn http(&self) -> Option<&HttpError> {
        match self {
            Error::Http(e) => Some(e),
            _ => None,
        }
    }

    /// The status the server answered, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.http().map(|e| e.status)
    }
}

/// A refused call, as the server explained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status answered.
    pub status: StatusCode,
    /// The server's `{"error", "code"}` body; `None` when the answer had none (a load
    /// balancer's 502, a proxy's 401), which callers treat differently.
    pub body: Option<ErrorBody>,
    /// `Retry-After` in seconds, sent with 429 and 503.
    pub retry_after: Option<u64>,
}

impl HttpError {
    /// Reads a refusal; a body that cannot be read or parsed leaves [`HttpError::body`]
    /// empty rather than hiding the status.
    pub async fn from_response(resp: Response) -> Self {
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let body = resp.bytes().await.unwrap_or_default();
        Self::from_parts(status, retry_after, &body)
    }

    pub(crate) fn from_parts(status: StatusCode, retry_after: Option<u64>, body: &[u8]) -> Self {
        Self {
            status,
            body: serde_json::from_slice(body).ok(),
            retry_after,
        }
    }

    /// The server's stable error code, or `""` when it sent no error body.
    pub fn code(&self) -> &str {
        self.body.as_ref().map_or("", |b| b.code.as_str())
    }

    /// The server's explanation, or the status's reason phrase when it sent none.
    pub fn message(&self) -> &str {
        match &self.body {
            Some(b) => &b.error,
            None => self.status.canonical_reason().unwrap_or("error"),
        }
    }

    /// Whether a fresh access token may help: a 401 about the bearer token itself
    /// (`invalid_token`), or one without the server's body, which only a proxy in
    /// front of it sends. A 401 about something else (a wrong password when deleting
    /// the account) must not trigger a refresh.
    pub fn is_token_problem(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
            && self.body.as_ref().is_none_or(|b| b.code == "invalid_token")
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}: {}", self.status.as_u16(), self.message())
    }
}

impl std::error::Error for HttpError {}

/// `Retry-After` as the server sends it: whole seconds (never an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_body_is_kept() {
        let e = HttpError::from_parts(
            StatusCode::FORBIDDEN,
            None,
            br#"{"error":"storage quota exceeded","code":"quota_exceeded"}"#,
        );
        assert_eq!(e.code(), "quota_exceeded");
        assert_eq!(e.message(), "storage quota exceeded");
        assert_eq!(e.to_string(), "HTTP 403: storage quota exceeded");
    }

    #[test]
    fn a_bodiless_answer_falls_back_to_the_reason_phrase() {
        let e = HttpError::from_parts(StatusCode::BAD_GATEWAY, Some(2), b"<html>bad gateway");
        assert_eq!(e.body, None);
        assert_eq!(e.code(), "");
        assert_eq!(e.message(), "Bad Gateway");
        assert_eq!(e.retry_after, Some(2));
        let odd = HttpError::from_parts(StatusCode::from_u16(599).unwrap(), None, b"");
        assert_eq!(odd.message(), "error");
    }

    #[test]
    fn only_token_trouble_asks_for_a_refresh() {
        let with = |status: StatusCode, body: &str| {
            HttpError::from_parts(status, None, body.as_bytes()).is_token_problem()
        };
        assert!(with(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid or expired access token","code":"invalid_token"}"#
        ));
        assert!(with(StatusCode::UNAUTHORIZED, "proxy says no"));
        assert!(!with(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid email or password","code":"unauthorized"}"#
        ));
        assert!(!with(
            StatusCode::FORBIDDEN,
            r#"{"error":"x","code":"invalid_token"}"#
        ));
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, " 30 ".parse().unwrap());
        assert_eq!(retry_after(&h), Some(30));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
