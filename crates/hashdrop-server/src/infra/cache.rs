//! Cache-aside for the public file lookup (share facts, share page, download
//! refusals), behind [`FileCache`].
//!
//! What is cached is only what never changes while a file is live ([`FileFacts`]:
//! owner, object key, name, size, key mode, expiry, download cap) of files in status
//! `uploaded`. The download counter is not cached, and the download itself is still
//! decided by one conditional UPDATE on the primary, so a stale entry can at worst
//! refuse early what the database would refuse too (a foreign or expired link); it
//! can never let a download through.
//!
//! Every write that ends a file's life (file delete, account delete, admin reset,
//! the cleaners through `retire_file`) invalidates after its commit. Invalidation
//! writes a short-lived tombstone and filling uses `SET NX`, so a reader that looked
//! the file up just before the delete committed cannot put the old record back.
//!
//! Backends: `none`, and `redis://` shared by every instance. There is no in-process
//! cache on purpose: instances could not invalidate each other's copies, and on a
//! single instance the lookup by primary key is already cheap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::CacheConfig;
pub use crate::domain::file::FileFacts;
use crate::infra::redis_link::{Health, RedisLink};

/// Hits and misses of this instance's cache, for tests and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by the cache.
    pub hits: u64,
    /// Lookups that went to the database (absent, tombstoned or Redis unreachable).
    pub misses: u64,
}

/// A cache of [`FileFacts`] by file id.
#[async_trait]
pub trait FileCache: Send + Sync + std::fmt::Debug {
    /// The cached facts of `file_id`, if any.
    async fn get(&self, file_id: &str) -> Option<FileFacts>;
    /// Stores the facts of a file just read as `uploaded` from the database, unless
    /// an entry or tombstone is already there.
    async fn put(&self, file_id: &str, facts: &FileFacts);
    /// Forgets `file_ids` (after the change that ended them has committed).
    async fn invalidate(&self, file_ids: &[String]);
    /// Readiness state.
    async fn health(&self) -> Health;
    /// Counters of this instance.
    fn stats(&self) -> CacheStats;
}

/// No cache: every lookup reads the database.
#[derive(Debug, Default)]
pub struct NoCache;

#[async_trait]
impl FileCache for NoCache {
    async fn get(&self, _file_id: &str) -> Option<FileFacts> {
        None
    }
    async fn put(&self, _file_id: &str, _facts: &FileFacts) {}
    async fn invalidate(&self, _file_ids: &[String]) {}
    async fn health(&self) -> Health {
        Health::Disabled
    }
    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

const TOMBSTONE: &str = "-";
// Keeps each invalidation round trip small even for an admin reset of many files.
const INVALIDATE_BATCH: usize = 500;

/// Facts in Redis as JSON under `{prefix}:file:{id}`, with a TTL.
#[derive(Debug)]
pub struct RedisFileCache {
    link: RedisLink,
    prefix: String,
    ttl_secs: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RedisFileCache {
    /// A cache on `url`; connects lazily.
    pub fn new(url: &str, prefix: &str, ttl_secs: u64) -> anyhow::Result<Self> {
        Ok(RedisFileCache {
            link: RedisLink::new(url, "file cache")?,
            prefix: prefix.to_string(),
            ttl_secs: ttl_secs.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The Redis key of `file_id`'s entry. `file2`: entries gained the sealed name
    /// and keyed digest, and an instance must not read an older instance's entry
    /// (which lacks them) during a rolling upgrade.
    pub fn key(prefix: &str, file_id: &str) -> String {
        format!("{prefix}:file2:{file_id}")
    }

    fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("hashdrop_cache_misses_total").increment(1);
    }
}

#[async_trait]
impl FileCache for RedisFileCache {
    async fn get(&self, file_id: &str) -> Option<FileFacts> {
        let key = Self::key(&self.prefix, file_id);
        let raw: Option<Option<String>> = self
            .link
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        let facts = raw
            .flatten()
            .filter(|v| v != TOMBSTONE)
            .and_then(|v| serde_json::from_str::<FileFacts>(&v).ok());
        match facts {
            Some(f) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hashdrop_cache_hits_total").increment(1);
                Some(f)
            }
            None => {
                self.miss();
                None
            }
        }
    }

    async fn put(&self, file_id: &str, facts: &FileFacts) {
        let Ok(json) = serde_json::to_string(facts) else {
            return;
        };
        let key = Self::key(&self.prefix, file_id);
        let ttl = self.ttl_secs;
        let _: Option<()> = self
            .link
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("EX")
                    .arg(ttl)
                    .arg("NX")
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    async fn invalidate(&self, file_ids: &[String]) {
        for chunk in file_ids.chunks(INVALIDATE_BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                // Plain SET (not DEL): the tombstone outlives any entry a racing
                // reader might still put, since puts use NX and the same TTL.
                pipe.cmd("SET")
                    .arg(Self::key(&self.prefix, id))
                    .arg(TOMBSTONE)
                    .arg("EX")
                    .arg(self.ttl_secs)
                    .ignore();
            }
            let done: Option<()> = self
                .link
                .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
                .await;
            if done.is_none() {
                // Redis is unreachable: entries it still holds expire within the
                // TTL, and downloads never trust them anyway.
                tracing::warn!(
                    files = chunk.len(),
                    ttl_secs = self.ttl_secs,
                    "file cache invalidation failed; entries expire by TTL"
                );
                metrics::counter!("hashdrop_cache_invalidation_failures_total").increment(1);
            }
        }
    }

    async fn health(&self) -> Health {
        self.link.health().await
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Builds the cache named by `cache.backend`.
pub fn from_config(cfg: &CacheConfig) -> anyhow::Result<Arc<dyn FileCache>> {
    if cfg.backend == "none" {
        Ok(Arc::new(NoCache))
    } else if cfg.backend.starts_with("redis://") || cfg.backend.starts_with("rediss://") {
        Ok(Arc::new(RedisFileCache::new(
            &cfg.backend,
            &cfg.redis_key_prefix,
            cfg.ttl_secs,
        )?))
    } else {
        anyhow::bail!("unsupported cache.backend (want \"none\" or redis://...)")
    }
}
