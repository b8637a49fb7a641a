//! Rate limiting per endpoint group: a global bucket and a per-key (IP or user) bucket,
//! behind [`RateLimiter`] so a shared Redis limiter can replace the in-process one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use crate::config::{GroupLimit, RateLimitConfig};
use crate::infra::redis_link::{Health, RedisLink};

/// Endpoint groups, each with its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// login, delete account.
    Auth,
    /// register (sends mail).
    Register,
    /// login attempts against one account, checked by the login handler itself.
    LoginAccount,
    /// verify.
    Otp,
    /// refresh, revoke.
    Token,
    /// presign, complete, part URLs.
    Upload,
    /// files/all.
    List,
    /// per-file metadata.
    FileMeta,
    /// public download paths.
    Download,
    /// the local store's signed blob GET and PUT (one request per part of a
    /// multipart upload).
    Blob,
    /// version, metrics, OpenAPI (healthz and readyz are never limited).
    Health,
}

impl Group {
    fn limits(self, c: &RateLimitConfig) -> GroupLimit {
        match self {
            Group::Auth => c.auth,
            Group::Register => c.register,
            Group::LoginAccount => c.login_account,
            Group::Otp => c.otp,
            Group::Token => c.token,
            Group::Upload => c.upload,
            Group::List => c.list,
            Group::FileMeta => c.file_meta,
            Group::Download => c.download,
            Group::Blob => c.blob,
            Group::Health => c.health,
        }
    }

    /// Groups keyed by the authenticated user rather than the client IP.
    pub fn keyed_by_user(self) -> bool {
        matches!(self, Group::Upload | Group::List | Group::FileMeta)
    }
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Bucket size of the tightest bucket.
    pub limit: u32,
    /// Whole tokens left in the tightest bucket.
    pub remaining: u32,
    /// Seconds until one token is back (when refused) or the bucket is full.
    pub reset_secs: u64,
}

/// A rate limiter shared by all requests.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Takes one token from the group's global bucket and from `key`'s buckets.
    async fn check(&self, group: Group, key: &str) -> Decision;

    /// Whether the limiter works as configured; readiness reports it.
    async fn health(&self) -> Health {
        Health::Ok
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Refill period: a bucket idle this long is full again, the same as absent.
    period_secs: u32,
}

impl Bucket {
    fn refill(&mut self, now: Instant, size: u32, period_secs: f64) {
        let rate = size as f64 / period_secs;
        let dt = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(size as f64);
        self.last = now;
    }
}

/// One bucket a check takes from: `size` tokens, refilled over `period_secs`.
struct BucketSpec {
    key: String,
    size: u32,
    period_secs: u32,
}

/// The buckets of one check, in a fixed order: the group's global one, the per-key
/// per-minute one, the per-key per-hour one; those sized 0 are left out.
fn bucket_specs(lim: GroupLimit, key: &str) -> Vec<BucketSpec> {
    [
        (GLOBAL_KEY.to_string(), lim.global_per_minute, 60),
        (key.to_string(), lim.per_key_per_minute, 60),
        (format!("{key}\0hour"), lim.per_key_per_hour, 3600),
    ]
    .into_iter()
    .filter(|(_, size, _)| *size > 0)
    .map(|(key, size, period_secs)| BucketSpec {
        key,
        size,
        period_secs,
    })
    .collect()
}

/// In-process token buckets, at most `capacity` of them. Buckets that refilled
/// completely are dropped (a full bucket is the same as none), by a scan that runs
/// only when the map is full and at most once a second. If the map is still full,
/// a new key takes from its group's shared overflow bucket instead of getting its
/// own: a flood of fresh keys (spoofed, or a whole IPv6 range) costs bounded memory
/// and gets one bucket's worth of requests, never one per key.
#[derive(Debug)]
pub struct MemoryLimiter {
    cfg: RateLimitConfig,
    capacity: usize,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<(Group, String), Bucket>,
    last_prune: Option<Instant>,
}

/// Default bound on in-process buckets (a few MB).
pub const DEFAULT_CAPACITY: usize = 100_000;

impl MemoryLimiter {
    /// New limiter with the given limits.
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self::with_capacity(cfg, DEFAULT_CAPACITY)
    }

    /// New limiter keeping at most `capacity` buckets.
    pub fn with_capacity(cfg: RateLimitConfig, capacity: usize) -> Self {
        MemoryLimiter {
            cfg,
            capacity: capacity.max(16),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("limiter lock").map.len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Buckets {
    /// Makes room for `needed` new buckets if it can: drops full buckets, at most
    /// once a second. Returns whether they fit.
    fn room_for(&mut self, needed: usize, capacity: usize, now: Instant) -> bool {
        if self.map.len() + needed <= capacity {
            return true;
        }
        let due = self
            .last_prune
            .is_none_or(|t| now.duration_since(t).as_secs() >= 1);
        if due {
            self.last_prune = Some(now);
            self.map
                .retain(|_, b| now.duration_since(b.last).as_secs() < b.period_secs as u64);
        }
        self.map.len() + needed <= capacity
    }
}

const GLOBAL_KEY: &str = "\0global";
const OVERFLOW_KEY: &str = "\0overflow";

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, group: Group, key: &str) -> Decision {
        let lim = group.limits(&self.cfg);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let mut specs = bucket_specs(lim, key);
        let missing = specs
            .iter()
            .filter(|s| !buckets.map.contains_key(&(group, s.key.clone())))
            .count();
        // The global and overflow buckets (one each per group) are always allowed:
        // the capacity bounds per-key buckets, and those are what a flood creates.
        if missing > 0 && !buckets.room_for(missing, self.capacity, now) {
            specs = bucket_specs(lim, OVERFLOW_KEY);
        }
        let map = &mut buckets.map;
        // Check every bucket before taking from any, so a refusal costs nothing.
        let mut tightest: Option<Decision> = None;
        let mut allowed = true;
        for spec in &specs {
            let b = map.entry((group, spec.key.clone())).or_insert(Bucket {
                tokens: spec.size as f64,
                last: now,
                period_secs: spec.period_secs,
            });
            let period = spec.period_secs as f64;
            b.refill(now, spec.size, period);
            let rate = spec.size as f64 / period;
            let ok = b.tokens >= 1.0;
            let after = if ok { b.tokens - 1.0 } else { b.tokens };
            let reset = if ok {
                ((spec.size as f64 - after) / rate).ceil() as u64
            } else {
                ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64
            };
            let d = Decision {
                allowed: ok,
                limit: spec.size,
                remaining: after.floor() as u32,
                reset_secs: reset,
            };
            allowed &= ok;
            let replace = match &tightest {
                None => true,
                Some(t) => (!ok && t.allowed) || (ok == t.allowed && d.remaining < t.remaining),
            };
            if replace {
                tightest = Some(d);
            }
        }
        if allowed {
            for spec in &specs {
                if let Some(b) = map.get_mut(&(group, spec.key.clone())) {
                    b.tokens -= 1.0;
                }
            }
        }
        let mut d = tightest.unwrap_or(Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_secs: 0,
        });
        d.allowed = allowed;
        d
    }
}

/// Limits shared by every instance through Redis: the same token buckets as
/// [`MemoryLimiter`] (size = one minute's worth, refilled at `per_minute / 60` per
/// second; global and per-key, all-or-nothing), kept in Redis hashes and updated by
/// one Lua script, so instances cannot race each other and the fleet as a whole gets
/// exactly the configured rate. The script reads the time from Redis (`TIME`), so the
/// instances' clocks do not matter. When Redis is unreachable or slow the check falls
/// back to this instance's in-process buckets, so the service stays up with
/// per-instance limits (ARCHITECTURE.md §5), and returns to the shared buckets by
/// itself once Redis answers again.
pub struct RedisLimiter {
    cfg: RateLimitConfig,
    link: RedisLink,
    prefix: String,
    script: redis::Script,
    fallback: MemoryLimiter,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

// KEYS: the buckets to take from (1 to 3); ARGV: size and refill period (ms) of each,
// in pairs. Returns {allowed, limit, remaining, reset_secs} of the tightest bucket,
// chosen as MemoryLimiter chooses it. A bucket is a hash {tokens, ts (ms)}; a missing
// one is full, which is also what an idle bucket becomes after its period, so
// buckets expire a second after it and idle keys cost no memory.
const BUCKET_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local all = true
for i = 1, n do
  local size, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk, ts = tonumber(b[1]), tonumber(b[2])
  if tk == nil or ts == nil then tk = size; ts = now end
  local dt = now - ts
  if dt < 0 then dt = 0 end
  tk = math.min(size, tk + dt * size / period)
  tokens[i] = tk
  if tk < 1 then all = false end
end
local best_ok, best_limit, best_left, best_reset
for i = 1, n do
  local size, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local rate = size * 1000 / period
  local tk = tokens[i]
  local ok = tk >= 1
  local after, reset = tk, 0
  if ok then
    after = tk - 1
    reset = math.ceil((size - after) / rate)
  else
    reset = math.max(1, math.ceil((1 - tk) / rate))
  end
  local left = math.floor(after)
  if best_limit == nil or (not ok and best_ok) or (ok == best_ok and left < best_left) then
    best_ok, best_limit, best_left, best_reset = ok, size, left, reset
  end
end
if all then
  for i = 1, n do
    redis.call('HSET', KEYS[i], 'tokens', tokens[i] - 1, 'ts', now)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i]) + 1000)
  end
end
return {all and 1 or 0, best_limit, best_left, best_reset}
"#;

impl RedisLimiter {
    /// A limiter on `url` (`redis://...`); connects lazily, so a Redis that is down
    /// at startup does not stop the server.
    pub fn new(url: &str, prefix: &str, cfg: RateLimitConfig) -> anyhow::Result<Self> {
        Ok(RedisLimiter {
            link: RedisLink::new(url, "rate limits")?,
            prefix: prefix.to_string(),
            script: redis::Script::new(BUCKET_SCRIPT),
            fallback: MemoryLimiter::new(cfg.clone()),
            cfg,
        })
    }

    async fn check_redis(&self, group: Group, key: &str) -> Option<Decision> {
        let lim = group.limits(&self.cfg);
        let mut script = self.script.prepare_invoke();
        let specs = bucket_specs(lim, key);
        for spec in &specs {
            let name = if spec.key == GLOBAL_KEY {
                format!("{}:rl:{group:?}:global", self.prefix)
            } else if let Some(k) = spec.key.strip_suffix("\0hour") {
                format!("{}:rl:{group:?}:h:{k}", self.prefix)
            } else {
                format!("{}:rl:{group:?}:k:{}", self.prefix, spec.key)
            };
            script.key(name);
            script.arg(spec.size);
            script.arg(spec.period_secs as u64 * 1000);
        }
        if specs.is_empty() {
            return Some(Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs: 0,
            });
        }
        let (allowed, limit, remaining, reset): (i64, i64, i64, i64) = self
            .link
            .run(|mut c| async move { script.invoke_async(&mut c).await })
            .await?;
        Some(Decision {
            allowed: allowed == 1,
            limit: limit.clamp(0, u32::MAX as i64) as u32,
            remaining: remaining.clamp(0, u32::MAX as i64) as u32,
            reset_secs: reset.max(0) as u64,
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, group: Group, key: &str) -> Decision {
        match self.check_redis(group, key).await {
            Some(d) => d,
            None => {
                metrics::counter!("hashdrop_rate_limit_fallbacks_total").increment(1);
                self.fallback.check(group, key).await
            }
        }
    }

    async fn health(&self) -> Health {
        self.link.health().await
    }
}

/// Builds the limiter named by `rate_limit.backend`.
pub fn from_config(cfg: &RateLimitConfig) -> anyhow::Result<std::sync::Arc<dyn RateLimiter>> {
    if cfg.backend == "memory" {
        Ok(std::sync::Arc::new(MemoryLimiter::new(cfg.clone())))
    } else if cfg.backend.starts_with("redis://") || cfg.backend.starts_with("rediss://") {
        Ok(std::sync::Arc::new(RedisLimiter::new(
            &cfg.backend,
            &cfg.redis_key_prefix,
            cfg.clone(),
        )?))
    } else {
        anyhow::bail!("unsupported rate_limit.backend (want \"memory\" or redis://...)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_refuses_after_limit() {
        let cfg = RateLimitConfig {
            auth: GroupLimit {
                global_per_minute: 100,
                per_key_per_minute: 3,
                per_key_per_hour: 0,
            },
            ..RateLimitConfig::default()
        };
        let l = MemoryLimiter::new(cfg);
        for _ in 0..3 {
            assert!(l.check(Group::Auth, "a").await.allowed);
        }
        let d = l.check(Group::Auth, "a").await;
        assert!(!d.allowed);
        assert!(d.reset_secs >= 1);
        assert!(l.check(Group::Auth, "b").await.allowed);
    }

    /// Spoofable or plentiful keys (IPv6 addresses) must not grow the map without
    /// bound: past its capacity, new keys share one overflow bucket per group, so a
    /// flood of fresh keys gets one bucket's worth, not one per key.
    #[tokio::test]
    async fn memory_limiter_is_bounded() {
        let cfg = RateLimitConfig {
            auth: GroupLimit {
                global_per_minute: 0,
                per_key_per_minute: 3,
                per_key_per_hour: 0,
            },
            ..RateLimitConfig::default()
        };
        let l = MemoryLimiter::with_capacity(cfg, 100);
        let mut refused = 0;
        for i in 0..10_000 {
            if !l.check(Group::Auth, &format!("ip:{i}")).await.allowed {
                refused += 1;
            }
        }
        assert!(l.len() <= 101, "{} buckets", l.len());
        assert!(
            refused >= 9_000,
            "fresh keys got their own buckets: {refused} refused"
        );
    }
}
