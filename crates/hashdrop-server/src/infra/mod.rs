//! Infrastructure: the backends behind small traits (blob stores, share cache, rate
//! limiter, mailer, the Redis link) and the server's own cryptography and private
//! files. Nothing here knows about HTTP or SQL; each backend is chosen by
//! configuration.

pub mod blob;
pub mod cache;
pub mod coalesce;
pub mod crypto;
pub mod mailer;
pub mod private_fs;
pub mod ratelimit;
pub mod redis_link;
