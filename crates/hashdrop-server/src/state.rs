//! Shared application state handed to every service, route and worker: the
//! configuration, the store and the infrastructure, built once by `App::build`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::infra::blob::{BlobStore, LocalBlobStore};
use crate::infra::cache::FileCache;
use crate::infra::coalesce::Coalesced;
use crate::infra::crypto::{Keys, PasswordHasherCfg};
use crate::infra::mailer::Mailer;
use crate::infra::ratelimit::RateLimiter;
use crate::infra::redis_link::Health;
use crate::store::Db;

/// Cheap to clone: everything is behind `Arc`s.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Effective configuration.
    pub cfg: Arc<Config>,
    /// Metadata database.
    pub db: Db,
    /// Keyed hashes, JWTs.
    pub keys: Keys,
    /// Password hashing.
    pub hasher: PasswordHasherCfg,
    /// Object storage.
    pub blobs: Arc<dyn BlobStore>,
    /// The local store again, for its signed-URL HTTP routes; `None` with S3.
    pub local_blobs: Option<Arc<LocalBlobStore>>,
    /// Rate limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// Set when shutdown begins; readiness answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Wakes the job worker when work is enqueued.
    pub jobs_notify: Arc<Notify>,
    /// Base of every public link.
    pub public_url: Arc<str>,
    /// Cache of the public file lookup.
    pub cache: Arc<dyn FileCache>,
    /// Outgoing mail, used by the job worker.
    pub mailer: Arc<dyn Mailer>,
    /// This instance's name (`X-Hashdrop-Instance`).
    pub instance_id: Arc<str>,
    /// Readiness checks shared by concurrent probes.
    pub probes: Arc<Coalesced<DependencyChecks>>,
}

/// What readiness learned from the dependencies (`service::ops::dependency_checks`).
#[derive(Debug, Clone, Copy)]
pub struct DependencyChecks {
    /// The primary database answered.
    pub db_ok: bool,
    /// The blob store answered.
    pub blob_ok: bool,
    /// The shared cache.
    pub cache: Health,
    /// The shared rate limiter.
    pub rate_limit: Health,
}

impl AppState {
    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
