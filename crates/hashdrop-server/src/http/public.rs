//! Public, unauthenticated routes a recipient uses: the counted download redirect,
//! the share facts and the share page. They translate `service::shares`.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::{KeyMode, ShareInfo};

use crate::domain::time::{now_ms, rfc3339};
use crate::domain::{Error, Result};
use crate::service::{files, shares};
use crate::state::AppState;

/// `GET /files/download/{user_hash}/{file_id}`: counts the download and answers 303
/// to a short-lived signed blob URL.
pub async fn download(
    State(state): State<AppState>,
    Path((user_hash, file_id)): Path<(String, String)>,
) -> Result<Response> {
    let url = shares::download(&state, &user_hash, &file_id, now_ms()).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response())
}

/// `HEAD /files/download/{user_hash}/{file_id}`: the status a GET would get (204
/// where it would redirect), but no download is counted and no blob URL is handed
/// out. Routed explicitly: axum runs a GET handler for HEAD otherwise, and every
/// HEAD (link checkers, previews, `curl -I`) would use up the file's limits.
pub async fn download_head(
    State(state): State<AppState>,
    Path((user_hash, file_id)): Path<(String, String)>,
) -> Result<Response> {
    shares::check_download(&state, &user_hash, &file_id, now_ms()).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "no-store")],
    )
        .into_response())
}

/// `GET /api/share/{file_id}`: what a recipient needs, nothing about the owner.
pub async fn share_info(
    State(state): State<AppState>,
    Path(file_id): Path<String>,
) -> Result<Json<ShareInfo>> {
    let s = shares::share(&state, &file_id, now_ms()).await?;
    Ok(Json(ShareInfo {
        downloads_left: s.downloads_left,
        download_url: files::download_url(&state, &s.facts.user_id, &s.file_id),
        file_id: s.file_id,
        file_name: s.facts.file_name,
        metadata: super::files::sealed_metadata(s.facts.meta, None),
        keyed_digest: super::files::present(s.facts.keyed_digest),
        encrypted_size_bytes: s.facts.encrypted_size as u64,
        key_management_mode: KeyMode::parse(&s.facts.key_mode).unwrap_or(KeyMode::Vault),
        expires_at: s.facts.expires_at.map(rfc3339),
    }))
}

/// `GET /d/{file_id}`: the recipient page (`super::web`), which decrypts in the
/// browser with the key from the URL fragment. The status says whether the share is
/// live (200, else 404 or 410) for clients that do not run the page.
pub async fn share_page(State(state): State<AppState>, Path(file_id): Path<String>) -> Response {
    let status = match shares::share(&state, &file_id, now_ms()).await {
        Ok(_) => StatusCode::OK,
        Err(Error::Gone { .. }) => StatusCode::GONE,
        Err(_) => StatusCode::NOT_FOUND,
    };
    super::web::page(&state, status)
}
