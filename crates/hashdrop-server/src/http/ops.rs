//! Operational endpoints: health, readiness, version, metrics, OpenAPI, dev reset.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::{CliVersion, Readiness, ReadinessChecks};

use crate::domain::{Error, Result};
use crate::infra::redis_link::Health;
use crate::service;
use crate::state::{AppState, DependencyChecks};

/// `GET /api/healthz`: liveness, plain `OK` like the reference. Not rate limited: it
/// costs less than a limiter check, and must answer whatever anonymous traffic does.
pub async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK")
}

/// `GET /api/readyz`: 200 when the primary database and blob store answer and the
/// server is not draining; 503 otherwise. Trouble with a dependency every instance
/// shares (an S3 store, Redis, the read replica) is reported as `degraded` but keeps
/// the instance ready: each instance sees the same outage, so pulling them all out of
/// the load balancer would only turn a partial outage into a total one
/// (docs/SCALING.md, "Readiness"). Not rate limited; the checks are coalesced
/// (`service::ops::dependency_checks`).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let DependencyChecks {
        db_ok,
        blob_ok,
        cache,
        rate_limit,
    } = service::ops::dependency_checks(&state).await;
    let draining = state.is_draining();
    let ready = db_ok && (blob_ok || state.blobs.is_shared()) && !draining;
    let replica = match state.db.replica_up() {
        None => Health::Disabled,
        Some(true) => Health::Ok,
        Some(false) => Health::Degraded,
    };
    let degraded = !blob_ok
        || cache == Health::Degraded
        || rate_limit == Health::Degraded
        || replica == Health::Degraded;
    let word = |ok: bool| if ok { "ok" } else { "error" }.to_string();
    let body = Readiness {
        status: match (ready, degraded) {
            (false, _) => "not_ready",
            (true, true) => "degraded",
            (true, false) => "ready",
        }
        .into(),
        draining,
        checks: ReadinessChecks {
            database: word(db_ok),
            replica: replica.as_str().into(),
            blob_store: word(blob_ok),
            cache: cache.as_str().into(),
            rate_limit: rate_limit.as_str().into(),
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /api/cli/version`.
pub async fn cli_version(State(state): State<AppState>) -> Json<CliVersion> {
    Json(CliVersion {
        compatible_version: state.cfg.cli_version.clone(),
    })
}

/// `GET /metrics`: Prometheus text format; with `metrics_token` set, only for a
/// request carrying it as a bearer token (compared in constant time).
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(want) = state.cfg.metrics_token.as_deref() {
        use subtle::ConstantTimeEq;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = given.as_bytes().ct_eq(want.as_bytes()).into();
        if !ok {
            return Error::Unauthorized("metrics need the configured bearer token").into_response();
        }
    }
    service::ops::sample_gauges(&state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::observability::prometheus().render(),
    )
        .into_response()
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
}

/// `DELETE /admin/reset`: dev mode only. Deletes every account and file and queues
/// deletion of every object.
pub async fn admin_reset(State(state): State<AppState>) -> Result<StatusCode> {
    service::ops::reset(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fallback: JSON 404.
pub async fn not_found() -> Error {
    Error::NotFound("no such route")
}
