//! Routes of the owner's files: they translate between JSON and `service::files`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::{
    CompleteRequest, CompleteResponse, FileDetails, FileHash, FileMatch, KeyMode, PartUrl,
    PartUrlsRequest, PartUrlsResponse, PresignRequest, PresignResponse, SealedMetadata, StoredPart,
    StoredParts, UploadResource,
};

use super::extract::{ApiJson, ApiQuery, AuthUser, IdQuery};
use crate::domain::file::SealedMeta;
use crate::domain::time::rfc3339;
use crate::domain::{Error, Result};
use crate::service::files;
use crate::state::AppState;

fn key_mode(s: &str) -> KeyMode {
    KeyMode::parse(s).unwrap_or(KeyMode::Vault)
}

/// The sealed name and type as the API spells them; `owner_copy` only in answers to
/// the owner.
pub(super) fn sealed_metadata(
    meta: SealedMeta,
    owner_copy: Option<String>,
) -> Option<SealedMetadata> {
    meta.is_present().then(|| SealedMetadata {
        age_header: meta.meta_header,
        sealed: meta.meta_sealed,
        owner_copy: owner_copy.filter(|c| !c.is_empty()),
    })
}

/// A non-empty stored digest column.
pub(super) fn present(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

/// A JSON array of `rows`, each translated by `to_wire`.
fn json_list<R, W>(rows: Vec<R>, to_wire: impl FnMut(R) -> W) -> Json<Vec<W>> {
    Json(rows.into_iter().map(to_wire).collect())
}

/// `POST /api/files/presign`.
pub async fn presign(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<PresignRequest>,
) -> Result<Json<PresignResponse>> {
    let p = files::presign(&state, &user_id, &req).await?;
    let (upload_resource, part_count) = match p.upload {
        files::Upload::Single {
            url,
            url_expires_at,
        } => (
            Some(UploadResource {
                url,
                method: "PUT".into(),
                expires_at: rfc3339(url_expires_at),
            }),
            None,
        ),
        files::Upload::Multipart { part_count } => (None, Some(part_count)),
    };
    Ok(Json(PresignResponse {
        file_id: p.file_id,
        object_key: p.object_key,
        upload_resource,
        part_count,
    }))
}

/// `POST /api/files/parts`: signed URLs for parts of a pending multipart upload.
pub async fn part_urls(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrlsResponse>> {
    let urls = files::part_urls(&state, &user_id, &req.file_id, &req.part_numbers).await?;
    Ok(Json(PartUrlsResponse {
        parts: urls
            .into_iter()
            .map(|u| PartUrl {
                part_number: u.number,
                size_bytes: u.size,
                url: u.url,
                method: "PUT".into(),
                expires_at: rfc3339(u.expires_at),
            })
            .collect(),
    }))
}

/// `GET /api/files/parts?id=`: the parts the store holds of a pending multipart
/// upload.
pub async fn stored_parts(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<Json<StoredParts>> {
    let id = files::exact_id(q.id.as_deref())?;
    let (part_count, held) = files::stored_parts(&state, &user_id, &id).await?;
    Ok(Json(StoredParts {
        part_count,
        parts: held
            .into_iter()
            .map(|p| StoredPart {
                part_number: p.number,
                size_bytes: p.size,
            })
            .collect(),
    }))
}

/// `POST /api/files/complete`.
pub async fn complete(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<CompleteResponse>> {
    let c = files::complete(&state, &user_id, &req).await?;
    Ok(Json(CompleteResponse {
        s3_object_key: c.object_key,
        uploaded_file_size: c.size,
    }))
}

/// `GET /api/files/all`: the array the store built (`store::files::listing_json`).
pub async fn list_all(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
) -> Result<Response> {
    let json = files::list_json(&state, &user_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `GET /api/files/resolve?id=PREFIX`.
pub async fn resolve(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<Json<Vec<FileMatch>>> {
    let rows = files::find(&state, &user_id, q.id.as_deref()).await?;
    Ok(json_list(rows, |f| FileMatch {
        metadata: sealed_metadata(f.meta, Some(f.meta_owner)),
        file_id: f.id,
        file_name: f.file_name,
    }))
}

/// `GET /api/files?id=PREFIX`.
pub async fn details(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<Json<Vec<FileDetails>>> {
    let rows = files::find(&state, &user_id, q.id.as_deref()).await?;
    Ok(json_list(rows, |f| FileDetails {
        download_url: files::download_url(&state, &user_id, &f.id),
        share_url: files::share_url(&state, &f.id),
        key_management_mode: key_mode(&f.key_mode),
        metadata: sealed_metadata(f.meta, Some(f.meta_owner)),
        keyed_digest: present(f.keyed_digest),
        file_id: f.id,
        file_name: f.file_name,
        status: f.status,
        plaintext_size_bytes: f.plaintext_size as u64,
        encrypted_size_bytes: f.encrypted_size as u64,
        s3_key: f.object_key,
        plaintext_hash: f.plaintext_hash,
        expires_at: f.expires_at.map(rfc3339),
        max_downloads: f.max_downloads.map(|m| m as u64),
        download_count: f.download_count as u64,
    }))
}

/// `GET /api/files/hash?id=UUID`.
pub async fn hash(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<Json<FileHash>> {
    let hash = files::plaintext_sha256(&state, &user_id, q.id.as_deref()).await?;
    Ok(Json(FileHash { hash }))
}

/// `GET /api/files/salt?id=UUID`: kept for reference clients. age passphrase files
/// carry their scrypt salt in the header, so there is never a salt to return.
pub async fn salt(
    AuthUser(_user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<StatusCode> {
    files::exact_id(q.id.as_deref())?;
    Err(Error::NotFound(
        "no passphrase salt stored: age files keep it in their header",
    ))
}

/// `DELETE /api/files?id=PREFIX`: an ambiguous prefix is 409.
pub async fn delete_file(
    State(state): State<AppState>,
    AuthUser(user_id): AuthUser,
    ApiQuery(q): ApiQuery<IdQuery>,
) -> Result<StatusCode> {
    files::delete(&state, &user_id, q.id.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
