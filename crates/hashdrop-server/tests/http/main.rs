//! The server over real HTTP, one module per feature; each story runs on SQLite and
//! on PostgreSQL where the database matters (`both_backends!`).

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod cache;
mod files;
mod jobs;
mod mail;
mod multipart;
mod ops;
mod privacy;
mod ratelimit;
mod s3;
mod security;
mod shares;

/// What every feature module's stories use.
mod prelude {
    pub use std::time::Duration;

    pub use crate::common::{
        complete_request, credentials, error_code, expect, forwarded_for, poll, presign_request,
        refused, status, verify_request, with_body, without_query, Backend, TestApp,
    };
    pub use hashdrop_wire::*;
    pub use reqwest::{Method, StatusCode};
}
