//! The server over real HTTP, one module per feature; each story runs on SQLite and
//! on PostgreSQL where the database matters (`both_backends!`).

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod cache;
mod files;
mod jobs;
mod mail;
mod ops;
mod privacy;
mod ratelimit;
mod s3;
mod security;
mod shares;

/// What every feature module's stories use.
mod prelude {
    pub use std::time::Duration;

    pub use crate::common::{error_code, poll, presign_body, Backend, TestApp};
    pub use hashdrop_wire::*;
    pub use reqwest::{Method, StatusCode};
    pub use serde_json::json;
}
