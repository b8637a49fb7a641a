//! Operational endpoints: health, readiness, version, metrics, OpenAPI, dev reset.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::{CliVersion, Readiness, ReadinessChecks};

use crate::error::{ApiError, ApiResult};
use crate::redis_link::Health;
use crate::state::AppState;

/// `GET /api/healthz`: liveness, plain `OK` like the reference. Not rate limited: it
/// costs less than a limiter check, and must answer whatever anonymous traffic does.
pub async fn healthz() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK")
}

/// Results of readiness' dependency checks, shared by concurrent probes.
#[derive(Debug, Clone, Copy)]
struct DependencyChecks {
    db_ok: bool,
    blob_ok: bool,
    cache: Health,
    rate_limit: Health,
}

/// The last dependency checks and when they finished. Probes are never rate limited
/// (a limit anonymous traffic can exhaust would let anyone take every instance out
/// of the load balancer), so instead a flood of them is made cheap: a probe waits
/// for the checks in flight and takes any result that finished after it arrived;
/// only then does it run the checks itself. At most one set of checks (a database
/// ping, a store request) runs at a time per instance, whatever the request rate.
#[derive(Debug, Default)]
pub struct ProbeCoalescer(tokio::sync::Mutex<Option<(Instant, DependencyChecks)>>);

async fn dependency_checks(state: &AppState) -> DependencyChecks {
    let arrived = Instant::now();
    let mut last = state.probes.0.lock().await;
    if let Some((finished, checks)) = *last {
        if finished >= arrived {
            return checks;
        }
    }
    let rate_limit = async {
        if state.cfg.rate_limit.enabled {
            state.limiter.health().await
        } else {
            Health::Disabled
        }
    };
    let (db, blob, cache, rate_limit) = tokio::join!(
        state.db.ping(),
        state.blobs.check(),
        state.cache.health(),
        rate_limit
    );
    let checks = DependencyChecks {
        db_ok: db.is_ok(),
        blob_ok: blob.is_ok(),
        cache,
        rate_limit,
    };
    *last = Some((Instant::now(), checks));
    checks
}

/// `GET /api/readyz`: 200 when the primary database and blob store answer and the
/// server is not draining; 503 otherwise. Trouble with a dependency every instance
/// shares (an S3 store, Redis, the read replica) is reported as `degraded` but keeps
/// the instance ready: each instance sees the same outage, so pulling them all out of
/// the load balancer would only turn a partial outage into a total one
/// (docs/SCALING.md, "Readiness"). Not rate limited; see [`ProbeCoalescer`].
pub async fn readyz(State(state): State<AppState>) -> Response {
    let DependencyChecks {
        db_ok,
        blob_ok,
        cache,
        rate_limit,
    } = dependency_checks(&state).await;
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
            return ApiError::Unauthorized("metrics need the configured bearer token")
                .into_response();
        }
    }
    // Gauges sampled at scrape time.
    if let Ok(rows) =
        sqlx::query_as::<_, (String, i64)>("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .fetch_all(state.db.pool())
            .await
    {
        for s in ["queued", "running", "done", "dead"] {
            let n = rows.iter().find(|r| r.0 == s).map(|r| r.1).unwrap_or(0);
            metrics::gauge!("hashdrop_jobs", "state" => s).set(n as f64);
        }
    }
    if let Ok((bytes,)) =
        sqlx::query_as::<_, (i64,)>("SELECT used_bytes FROM global_usage WHERE id = 1")
            .fetch_one(state.db.pool())
            .await
    {
        metrics::gauge!("hashdrop_storage_reserved_bytes").set(bytes as f64);
    }
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
        crate::openapi::document_json(),
    )
        .into_response()
}

/// `DELETE /admin/reset`: dev mode only. Deletes every account and file and queues
/// deletion of every object.
pub async fn admin_reset(State(state): State<AppState>) -> ApiResult<StatusCode> {
    if !state.cfg.dev_mode {
        return Err(ApiError::Forbidden {
            message: "reset is only available in dev mode",
            code: "not_dev_mode",
        });
    }
    let mut tx = state.db.begin().await?;
    // Global row first, as every quota path: a delete or presign in flight finishes
    // before (and is wiped) or waits and then finds no file or user to count.
    crate::quota::lock_global(&mut tx).await?;
    let files: Vec<(String, String)> = sqlx::query_as("SELECT id, object_key FROM files")
        .fetch_all(&mut *tx)
        .await?;
    for (_, k) in &files {
        crate::jobs::enqueue_blob_delete(&mut tx, k, state.cfg.jobs.max_attempts).await?;
    }
    sqlx::query("DELETE FROM users").execute(&mut *tx).await?;
    sqlx::query("UPDATE global_usage SET used_bytes = 0 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.jobs_notify.notify_one();
    let ids: Vec<String> = files.into_iter().map(|(id, _)| id).collect();
    state.cache.invalidate(&ids).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Fallback: JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route")
}
