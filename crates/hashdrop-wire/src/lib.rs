//! Wire types of the Hashdrop HTTP API, shared by `hashdrop-server` and the `hashdrop`
//! CLI. Free of any HTTP, database or runtime dependency on purpose.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// The error body every failing API call returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable explanation.
    pub error: String,
    /// Stable machine-readable code.
    pub code: String,
}
