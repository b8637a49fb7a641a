//! The local blob store's signed-URL routes (with S3, clients talk to the bucket and
//! these routes are not mounted).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::extract::ApiQuery;
use crate::domain::time::now_ms;
use crate::domain::{Error, Result};
use crate::infra::blob::{BlobStore, LocalBlobStore, PutLimits, SignedQuery, OPAQUE_CONTENT_TYPE};
use crate::service::files::awaits_upload;
use crate::state::AppState;

/// The local store and the object key of a request whose signature holds for
/// `method`. Without a local store (S3) nothing is served, whatever the route.
fn signed(
    state: &AppState,
    method: &str,
    (prefix, name): (String, String),
    q: &SignedQuery,
) -> Result<(Arc<LocalBlobStore>, String)> {
    let store = state
        .local_blobs
        .clone()
        .ok_or(Error::NotFound("no such route"))?;
    let key = format!("{prefix}/{name}");
    store.check_sig(method, &key, q)?;
    Ok((store, key))
}

/// `PUT /blob/{prefix}/{name}`: stores the body as a new object. The key must belong
/// to a `pending` file, checked before and again after the body arrives (the file
/// may be deleted meanwhile, and its blob-delete job may already have run: the
/// object is then removed again). A client that stops sending is cut off: each
/// chunk must come within the idle timeout, the whole body before the URL's expiry
/// plus that timeout. A refusal closes the connection: the body may be only partly
/// read, and a client that reused the connection would send its next request into
/// the rest of it.
pub async fn put_blob(
    state: State<AppState>,
    path: Path<(String, String)>,
    query: ApiQuery<SignedQuery>,
    req: Request,
) -> Response {
    match store_body(state, path, query, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

async fn store_body(
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    req: Request,
) -> Result<Response> {
    let (store, key) = signed(&state, "PUT", path, &q)?;
    let no_upload = || Error::NotFound("no pending upload for this object");
    if !awaits_upload(&state, &key).await? {
        return Err(no_upload());
    }
    let max_bytes = q.max.unwrap_or(0);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(Error::TooLarge(
            "the body is larger than this upload URL allows",
        ));
    }
    let idle = Duration::from_secs(state.cfg.limits.upload_idle_timeout_secs.max(1));
    let limits = PutLimits {
        max_bytes,
        idle,
        deadline: tokio::time::Instant::now()
            + Duration::from_secs((q.exp - now_ms() / 1000).max(0) as u64)
            + idle,
    };
    let body = req.into_body().into_data_stream();
    if let (Some(upload_id), Some(number)) = (&q.upload, q.part) {
        // A part's URL is signed for its exact length: a shorter body is refused too.
        if declared.is_some_and(|len| len != max_bytes) {
            return Err(Error::Invalid(format!(
                "part {number} must be exactly {max_bytes} bytes"
            )));
        }
        let offset = q.at.unwrap_or(0);
        store
            .write_part(upload_id, number, offset, body, limits)
            .await?;
        // Deleted meanwhile: its delete job aborts the upload, or already did.
        if !awaits_upload(&state, &key).await? {
            let _ = store.abort_multipart(&key, upload_id).await;
            return Err(no_upload());
        }
        return Ok(StatusCode::OK.into_response());
    }
    store.write_new(&key, body, limits).await?;
    if !awaits_upload(&state, &key).await? {
        store.discard(&key).await;
        return Err(no_upload());
    }
    Ok(StatusCode::OK.into_response())
}

/// Headers of every served object: it never changes under its key, so caches may
/// keep it forever; and it is opaque bytes to save, never something a browser
/// renders on this origin, whatever type its uploader claimed.
const OBJECT_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable",
    ),
    (header::CONTENT_TYPE, OPAQUE_CONTENT_TYPE),
    (header::CONTENT_DISPOSITION, "attachment"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// `GET /blob/{prefix}/{name}`: serves the object with Range support.
pub async fn get_blob(
    State(state): State<AppState>,
    Path(path): Path<(String, String)>,
    ApiQuery(q): ApiQuery<SignedQuery>,
    req: Request,
) -> Result<Response> {
    let (store, key) = signed(&state, "GET", path, &q)?;
    let path = store
        .object_file(&key)
        .await
        .ok_or(Error::NotFound("object not found"))?;
    let resp = tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("serving blob: {e}")))?;
    let mut resp = resp.map(Body::new);
    for (name, value) in OBJECT_HEADERS {
        resp.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(resp)
}
