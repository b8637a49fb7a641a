//! The domain layer: what a file, an account and a job are, the rules their values
//! obey, and the one error type every layer above reports in. Nothing here knows
//! about HTTP, SQL or any backend.

pub mod account;
pub mod error;
pub mod file;
pub mod job;
pub mod time;

pub use error::{Error, Result};
