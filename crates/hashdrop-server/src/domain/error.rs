//! The domain error: every way a request can fail, in words a client may see.
//! `crate::http::error` maps each variant to a status code and a JSON body, in one
//! place; nothing below HTTP knows about status codes.

/// Everything a service can fail with. Variants carry only client-safe text;
/// `Internal` keeps its cause for the log and is reported opaquely.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input.
    #[error("{0}")]
    Invalid(String),
    /// Wrong credentials (password, OTP, refresh token).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The access token is missing, malformed or expired. Distinct so a client knows
    /// a refresh may help, whatever the wording.
    #[error("missing or invalid access token")]
    InvalidAccessToken,
    /// Not allowed (bad signature, quota, dev-only operation).
    #[error("{message}")]
    Forbidden {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
    },
    /// Not found, or not the caller's (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(&'static str),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(&'static str),
    /// The share link expired or is used up.
    #[error("{message}")]
    Gone {
        /// Client-facing text.
        message: &'static str,
        /// Stable code (`link_expired`, `download_cap_reached`).
        code: &'static str,
    },
    /// The client stopped sending a request body.
    #[error("{0}")]
    Stalled(&'static str),
    /// Too large.
    #[error("{0}")]
    TooLarge(&'static str),
    /// A rate or download limit, with seconds to wait.
    #[error("{message}")]
    Limited {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// Temporarily unavailable (global quota, store down, draining).
    #[error("{message}")]
    Unavailable {
        /// Client-facing text.
        message: &'static str,
        /// Stable code.
        code: &'static str,
    },
    /// A fault of ours: logged with its cause, reported opaquely.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// 410 with its own code, so the share page can tell "expired" from "used up".
pub const LINK_EXPIRED: Error = Error::Gone {
    message: "this share link has expired",
    code: "link_expired",
};

/// 410 for a file whose total download cap is used up.
pub const DOWNLOAD_CAP_REACHED: Error = Error::Gone {
    message: "this file reached its download limit",
    code: "download_cap_reached",
};

/// A file that does not exist, is not live, or is not the caller's.
pub const FILE_NOT_FOUND: Error = Error::NotFound("file not found");

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.into())
    }
}

/// Result of a service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
