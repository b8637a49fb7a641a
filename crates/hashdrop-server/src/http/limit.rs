//! The rate-limit middleware: which client a request is (the TCP peer, or the
//! address trusted proxies forwarded) and which bucket of `infra::ratelimit` it
//! draws from.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::TrustedProxy;
use crate::domain::Error;
use crate::infra::ratelimit::Group;
use crate::state::AppState;

/// The client's IP: the TCP peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Every
/// header line counts, in order: HAProxy (`option forwardfor`) appends its own line
/// after whatever the client sent, so the first line is the client's to choose and
/// only the entries on the right were written by proxies we trust. An unparsable
/// entry where the walk stops means the chain cannot be believed: the peer is used.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for part in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ip.to_canonical(),
            Err(_) => return peer,
        }
    }
    peer
}

/// The per-IP key of `ip`. IPv6 clients are keyed by their /64: a single host
/// usually holds a whole /64 and could otherwise use a fresh address per request.
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("ip:{net}/64")
        }
    }
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
        super::extract::bearer_user(&state, req.headers())
            .map(|u| format!("user:{u}"))
            .unwrap_or_else(|| ip_key(ip))
    } else {
        ip_key(ip)
    };
    let d = state.limiter.check(group, &key).await;
    let mut resp = if d.allowed {
        next.run(req).await
    } else {
        metrics::counter!("hashdrop_rate_limited_total").increment(1);
        Error::Limited {
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

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "ip:192.0.2.7");
    }

    #[test]
    fn xff_only_from_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "9.9.9.9, 10.0.0.1".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "8.8.8.8".parse().unwrap();
        let trusted = ["10.0.0.1".parse::<TrustedProxy>().unwrap()];
        assert_eq!(client_ip(other, &h, &trusted), other);
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn xff_lines_are_read_right_to_left() {
        let mut h = HeaderMap::new();
        // The client's own line first, then the one each proxy appended.
        h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append("x-forwarded-for", "7.7.7.7".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let trusted = ["10.0.0.0/24".parse::<TrustedProxy>().unwrap()];
        let peer: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "7.7.7.7".parse::<IpAddr>().unwrap()
        );
        h.append("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(peer, &h, &trusted), peer.to_canonical());
    }
}
