//! The HTTP layer: the router, its middleware and routes that only translate
//! between HTTP/JSON and the services. Errors become responses in `error`.

pub mod blob;
pub mod error;
pub mod extract;
pub mod files;
pub mod limit;
pub mod openapi;
pub mod ops;
pub mod public;
pub mod users;
pub mod web;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, patch, post};
use axum::Router;

use crate::infra::ratelimit::Group;
use crate::state::AppState;
use limit::limit;

/// Builds the full router, each endpoint group behind its own rate limits.
pub fn router(state: AppState) -> Router {
    let group = |g: Group, r: Router<AppState>| {
        r.route_layer(from_fn_with_state((state.clone(), g), limit))
    };
    // Probes sit outside every rate limit: a bucket anonymous traffic can drain would
    // let anyone make the load balancer take every instance out (ops::readyz
    // coalesces its checks instead).
    let probes = Router::new()
        .route("/api/healthz", get(ops::healthz))
        .route("/api/readyz", get(ops::readyz));
    let health = Router::new()
        .route("/api/cli/version", get(ops::cli_version))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi));
    // register sends mail: its own, much slower per-IP budget.
    let register = Router::new().route("/api/user/register", post(users::register));
    let auth_routes = Router::new()
        .route("/api/user/login", post(users::login))
        .route("/api/user", delete(users::delete_account))
        .route("/admin/reset", delete(ops::admin_reset));
    let otp = Router::new().route("/api/user/verify", patch(users::verify));
    let token = Router::new()
        .route("/api/token/refresh", post(users::refresh))
        .route("/api/token/revoke", post(users::revoke));
    let upload = Router::new()
        .route("/api/files/presign", post(files::presign))
        .route("/api/files/complete", post(files::complete))
        .route(
            "/api/files/parts",
            post(files::part_urls).get(files::stored_parts),
        );
    let list = Router::new().route("/api/files/all", get(files::list_all));
    let file_meta = Router::new()
        .route("/api/files/resolve", get(files::resolve))
        .route("/api/files", get(files::details).delete(files::delete_file))
        .route("/api/files/hash", get(files::hash))
        .route("/api/files/salt", get(files::salt));
    let download = Router::new()
        .route(
            "/files/download/{user_hash}/{file_id}",
            // HEAD explicitly: a GET route would run the counting handler for it.
            get(public::download).head(public::download_head),
        )
        .route("/api/share/{file_id}", get(public::share_info))
        .route("/d/{file_id}", get(public::share_page));
    // Only the local store serves bytes itself; with S3 clients talk to the bucket.
    // Its own group: a large upload is hundreds of part PUTs from one address, which
    // must not use up that address's downloads (or be stopped by them).
    let blobs = state.local_blobs.is_some().then(|| {
        group(
            Group::Blob,
            Router::new().route(
                "/blob/{prefix}/{name}",
                get(blob::get_blob).put(blob::put_blob),
            ),
        )
    });
    Router::new()
        .merge(probes)
        .merge(group(Group::Health, health))
        .merge(group(Group::Register, register))
        .merge(group(Group::Auth, auth_routes))
        .merge(group(Group::Otp, otp))
        .merge(group(Group::Token, token))
        .merge(group(Group::Upload, upload))
        .merge(group(Group::List, list))
        .merge(group(Group::FileMeta, file_meta))
        .merge(group(Group::Download, download))
        .merge(blobs.unwrap_or_default())
        .merge(web::asset_routes())
        .fallback(ops::not_found)
        .layer(from_fn(crate::observability::request_context))
        .layer(from_fn_with_state(state.clone(), instance))
        .with_state(state)
}

/// Outermost layer: every response, errors and 429s included, names the instance
/// that produced it (`X-Hashdrop-Instance`), and every log line of the request
/// carries it as the `instance` field of an enclosing span.
async fn instance(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = tracing::info_span!("instance", instance = %state.instance_id);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.instance_id) {
        resp.headers_mut().insert("x-hashdrop-instance", v);
    }
    resp
}
