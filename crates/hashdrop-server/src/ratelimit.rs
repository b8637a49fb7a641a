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
