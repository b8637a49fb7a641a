//! Rate limiting per endpoint group: a global bucket and a per-key (IP or user) bucket,
//! behind [`RateLimiter`] so a shared Redis limiter can replace the in-process one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{GroupLimit, RateLimitConfig};
use crate::error::ApiError;
use crate::state::AppState;

/// Endpoint groups, each with its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// register, login, delete account.
    Auth,
    /// verify.
    Otp,
    /// refresh, revoke.
    Token,
    /// presign, complete, blob PUT.
    Upload,
    /// files/all.
    List,
    /// per-file metadata.
    FileMeta,
    /// public download paths.
    Download,
    /// health, readiness, version.
    Health,
}

impl Group {
    fn limits(self, c: &RateLimitConfig) -> GroupLimit {
        match self {
            Group::Auth => c.auth,
            Group::Otp => c.otp,
            Group::Token => c.token,
            Group::Upload => c.upload,
            Group::List => c.list,
            Group::FileMeta => c.file_meta,
            Group::Download => c.download,
            Group::Health => c.health,
        }
    }

    /// Groups keyed by the authenticated user rather than the client IP.
    fn keyed_by_user(self) -> bool {
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
    /// Takes one token from the group's global bucket and from `key`'s bucket.
    async fn check(&self, group: Group, key: &str) -> Decision;
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, per_minute: u32) {
        let rate = per_minute as f64 / 60.0;
        let dt = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(per_minute as f64);
        self.last = now;
    }
}

/// In-process token buckets.
#[derive(Debug)]
pub struct MemoryLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<(Group, String), Bucket>>,
}

impl MemoryLimiter {
    /// New limiter with the given limits.
    pub fn new(cfg: RateLimitConfig) -> Self {
        MemoryLimiter {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

const GLOBAL_KEY: &str = "\0global";

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn check(&self, group: Group, key: &str) -> Decision {
        let lim = group.limits(&self.cfg);
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("limiter lock");
        // Forget idle keys so the map cannot grow without bound.
        if map.len() > 100_000 {
            map.retain(|_, b| now.duration_since(b.last).as_secs() < 120);
        }
        let mut pairs: Vec<(String, u32)> = vec![(GLOBAL_KEY.to_string(), lim.global_per_minute)];
        if lim.per_key_per_minute > 0 {
            pairs.push((key.to_string(), lim.per_key_per_minute));
        }
        // Check every bucket before taking from any, so a refusal costs nothing.
        let mut tightest: Option<Decision> = None;
        let mut allowed = true;
        for (k, per_minute) in &pairs {
            if *per_minute == 0 {
                continue;
            }
            let b = map.entry((group, k.clone())).or_insert(Bucket {
                tokens: *per_minute as f64,
                last: now,
            });
            b.refill(now, *per_minute);
            let rate = *per_minute as f64 / 60.0;
            let ok = b.tokens >= 1.0;
            let after = if ok { b.tokens - 1.0 } else { b.tokens };
            let reset = if ok {
                ((*per_minute as f64 - after) / rate).ceil() as u64
            } else {
                ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64
            };
            let d = Decision {
                allowed: ok,
                limit: *per_minute,
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
            for (k, per_minute) in &pairs {
                if *per_minute > 0 {
                    if let Some(b) = map.get_mut(&(group, k.clone())) {
                        b.tokens -= 1.0;
                    }
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

/// Limits shared by every instance through Redis: fixed one-minute windows, one
/// counter per group (global) and per group+key, checked and incremented by one Lua
/// script so instances cannot race each other. When Redis is unreachable or slow
/// the check falls back to this instance's in-process buckets, so the service stays
/// up with per-instance limits (ARCHITECTURE.md §5).
pub struct RedisLimiter {
    cfg: RateLimitConfig,
    client: redis::Client,
    prefix: String,
    script: redis::Script,
    conn: tokio::sync::RwLock<Option<redis::aio::MultiplexedConnection>>,
    last_attempt: Mutex<Option<Instant>>,
    fallback: MemoryLimiter,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);
const REDIS_RECONNECT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

// KEYS: counters to check (1 or 2); ARGV: their limits, then the TTL in seconds.
// All-or-nothing: counts only when every counter is under its limit.
const WINDOW_SCRIPT: &str = r#"
local n = #KEYS
local counts = {}
for i = 1, n do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if counts[i] >= tonumber(ARGV[i]) then
    return {0, i, counts[i]}
  end
end
local tight, left = 1, nil
for i = 1, n do
  local c = redis.call('INCR', KEYS[i])
  if c == 1 then redis.call('EXPIRE', KEYS[i], ARGV[n + 1]) end
  local r = tonumber(ARGV[i]) - c
  if left == nil or r < left then left = r; tight = i end
end
return {1, tight, tonumber(ARGV[tight]) - left}
"#;

impl RedisLimiter {
    /// A limiter on `url` (`redis://...`); connects lazily, so a Redis that is down
    /// at startup does not stop the server.
    pub fn new(url: &str, prefix: &str, cfg: RateLimitConfig) -> anyhow::Result<Self> {
        Ok(RedisLimiter {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            script: redis::Script::new(WINDOW_SCRIPT),
            conn: tokio::sync::RwLock::new(None),
            last_attempt: Mutex::new(None),
            fallback: MemoryLimiter::new(cfg.clone()),
            cfg,
        })
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().expect("limiter lock");
            if last.is_some_and(|t| t.elapsed() < REDIS_RECONNECT_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match tokio::time::timeout(
            REDIS_TIMEOUT * 5,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(c)) => {
                *self.conn.write().await = Some(c.clone());
                Some(c)
            }
            _ => {
                tracing::warn!("redis unreachable; rate limits are per instance for now");
                None
            }
        }
    }

    async fn check_redis(&self, group: Group, key: &str) -> Option<Decision> {
        let lim = group.limits(&self.cfg);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let window = now / 60;
        let reset = 60 - now % 60;
        let mut script = self.script.prepare_invoke();
        let mut limits = Vec::new();
        if lim.global_per_minute > 0 {
            script.key(format!("{}:rl:{group:?}:{window}:global", self.prefix));
            limits.push(lim.global_per_minute);
        }
        if lim.per_key_per_minute > 0 {
            script.key(format!("{}:rl:{group:?}:{window}:k:{key}", self.prefix));
            limits.push(lim.per_key_per_minute);
        }
        if limits.is_empty() {
            return Some(Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs: 0,
            });
        }
        for l in &limits {
            script.arg(*l);
        }
        script.arg(61);
        let mut conn = self.connection().await?;
        let r: Result<Result<(i64, i64, i64), _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, script.invoke_async(&mut conn)).await;
        match r {
            Ok(Ok((allowed, which, count))) => {
                let limit = limits[(which.max(1) - 1) as usize];
                Some(Decision {
                    allowed: allowed == 1,
                    limit,
                    remaining: (limit as i64 - count).max(0) as u32,
                    reset_secs: reset,
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis rate limit check failed; using local buckets");
                *self.conn.write().await = None;
                None
            }
            Err(_) => {
                tracing::warn!("redis rate limit check timed out; using local buckets");
                None
            }
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, group: Group, key: &str) -> Decision {
        match self.check_redis(group, key).await {
            Some(d) => d,
            None => self.fallback.check(group, key).await,
        }
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

/// The client's IP: the peer, or — only when the peer is a trusted proxy — the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) else {
        return peer;
    };
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

/// Middleware applying `group`'s limits.
pub async fn limit(
    State((state, group)): State<(AppState, Group)>,
    req: Request,
    next: Next,
) -> Response {
    if !state.cfg.rate_limit.enabled {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, req.headers(), &state.cfg.trusted_proxies);
    let key = if group.keyed_by_user() {
        crate::api::auth::bearer_user(&state, req.headers())
            .map(|u| format!("user:{u}"))
            .unwrap_or_else(|| format!("ip:{ip}"))
    } else {
        format!("ip:{ip}")
    };
    let d = state.limiter.check(group, &key).await;
    let mut resp = if d.allowed {
        next.run(req).await
    } else {
        metrics::counter!("hashdrop_rate_limited_total").increment(1);
        ApiError::TooManyRequests {
            message: "rate limit exceeded",
            code: "rate_limited",
            retry_after: d.reset_secs,
        }
        .into_response()
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
    resp
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

    #[test]
    fn xff_only_from_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "9.9.9.9, 10.0.0.1".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(other, &h, &[proxy]), other);
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
    }
}
