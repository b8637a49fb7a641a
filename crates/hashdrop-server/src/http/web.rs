//! The recipient page (`web/`): built by `build.rs`, embedded in the binary and served
//! with headers that keep the key in the browser: a CSP that allows scripts, styles,
//! connections and frames from this origin only (no inline script), no referrer, no
//! MIME sniffing. The page reads the key from the URL fragment, which browsers never
//! send; nothing here ever sees it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!(concat!(env!("OUT_DIR"), "/web/index.html"));
const APP_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/app.js"));
const SERVICE_WORKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/sw.js"));
const STYLE_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/style.css"));
const DECRYPT_WORKER_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/decrypt-worker.js"));

// Content-Security-Policy of the page, its assets and its service worker: the blob
// store's origin, when it has its own, goes between the two halves (`connect-src`).
const CSP_HEAD: &str =
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self'; connect-src 'self'";
const CSP_TAIL: &str = "; frame-src 'self'; worker-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The CSP for this server: the page talks to its own origin only, plus the blob
/// store's when signed download URLs point elsewhere (an S3 bucket on its own origin,
/// see docs/WEB.md); the local store serves from this origin.
pub fn csp(state: &AppState) -> HeaderValue {
    let signed = state
        .blobs
        .presign_get("usrh-csp/probe", Duration::from_secs(1));
    let origin_of = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
    let extra = match (origin_of(&signed), origin_of(&state.public_url)) {
        (Some(blob), Some(own)) if blob != own && blob.is_tuple() => {
            format!(" {}", blob.ascii_serialization())
        }
        _ => String::new(),
    };
    // An origin is ASCII, so the first always succeeds; the fallbacks only get stricter.
    HeaderValue::from_str(&format!("{CSP_HEAD}{extra}{CSP_TAIL}"))
        .or_else(|_| HeaderValue::from_str(&format!("{CSP_HEAD}{CSP_TAIL}")))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// Routes of the page's static assets. The service worker lives under `/d/` so that
/// its scope covers the share pages and its download URLs (`/d/_save/{job}`). The
/// decryption workers' script is a separate same-origin file (`worker-src 'self'`; no
/// `blob:` URL), served with the same CSP, which is also the policy the workers run
/// under ('wasm-unsafe-eval' lets them compile libsodium).
pub fn asset_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/web/app.js",
            get(|s: State<AppState>| async move { asset(&s, "text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/web/style.css",
            get(|s: State<AppState>| async move { asset(&s, "text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/web/decrypt-worker.js",
            get(|s: State<AppState>| async move {
                asset(&s, "text/javascript; charset=utf-8", DECRYPT_WORKER_JS)
            }),
        )
        .route(
            "/d/sw.js",
            get(|s: State<AppState>| async move {
                asset(&s, "text/javascript; charset=utf-8", SERVICE_WORKER_JS)
            }),
        )
}

/// The share page with `status`: the page itself explains any refusal after asking
/// `/api/share/{id}`, the status only tells non-browser clients.
pub fn page(state: &AppState, status: StatusCode) -> Response {
    let mut resp = (status, INDEX_HTML).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(state, resp)
}

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(state, resp)
}

/// Security headers for everything the page is made of. `no-cache` makes browsers
/// revalidate, so a new server version's page and worker are picked up at once.
fn secure(state: &AppState, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp(state));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    resp
}
