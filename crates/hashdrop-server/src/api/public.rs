//! Public, unauthenticated paths a recipient uses: the counted download redirect,
//! the share facts and the share page.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hashdrop_wire::{KeyMode, ShareInfo};

use super::files::{download_url, parse_file_id};
use crate::cache::FileFacts;
use crate::db::{now_ms, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// 410 with its own code, so the share page can tell "expired" from "used up".
const LINK_EXPIRED: ApiError = ApiError::Gone {
    message: "this share link has expired",
    code: "link_expired",
};

/// What the public paths need to know about a file.
struct PublicFile {
    facts: FileFacts,
    download_count: i64,
}

const FACT_COLUMNS: &str =
    "user_id, object_key, file_name, encrypted_size, key_mode, expires_at, max_downloads";

type FactRow = (
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
);
type LiveRow = (
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    i64,
);

fn facts_of(r: FactRow) -> FileFacts {
    FileFacts {
        user_id: r.0,
        object_key: r.1,
        file_name: r.2,
        encrypted_size: r.3,
        key_mode: r.4,
        expires_at: r.5,
        max_downloads: r.6,
    }
}

/// The live file from the primary, never from the cache or the replica: used where
/// the answer must match what the download UPDATE just decided.
async fn live_file(state: &AppState, file_id: &str) -> ApiResult<PublicFile> {
    let sql = format!(
        "SELECT {FACT_COLUMNS}, download_count FROM files WHERE id = $1 AND status = 'uploaded'"
    );
    let row: Option<LiveRow> = sqlx::query_as(&sql)
        .bind(file_id)
        .fetch_optional(state.db.pool())
        .await?;
    let r = row.ok_or(ApiError::NotFound("file not found"))?;
    Ok(PublicFile {
        download_count: r.7,
        facts: facts_of((r.0, r.1, r.2, r.3, r.4, r.5, r.6)),
    })
}

/// Cache-aside lookup for the share paths. The download count is not cached, so a
/// cached file reads it (from the primary) only when it has a download cap to check.
async fn shareable_file(state: &AppState, file_id: &str, now: i64) -> ApiResult<PublicFile> {
    let file = match state.cache.get(file_id).await {
        Some(facts) => {
            let download_count = match facts.max_downloads {
                Some(_) => live_download_count(state, file_id).await?,
                None => 0,
            };
            PublicFile {
                facts,
                download_count,
            }
        }
        None => {
            let f = live_file(state, file_id).await?;
            state.cache.put(file_id, &f.facts).await;
            f
        }
    };
    check_shareable(&file, now)?;
    Ok(file)
}

async fn live_download_count(state: &AppState, file_id: &str) -> ApiResult<i64> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT download_count FROM files WHERE id = $1 AND status = 'uploaded'")
            .bind(file_id)
            .fetch_optional(state.db.pool())
            .await?;
    Ok(row.ok_or(ApiError::NotFound("file not found"))?.0)
}

fn check_shareable(f: &PublicFile, now: i64) -> ApiResult<()> {
    if f.facts.expires_at.is_some_and(|e| e <= now) {
        return Err(LINK_EXPIRED);
    }
    if f.facts.max_downloads.is_some_and(|m| f.download_count >= m) {
        return Err(ApiError::Gone {
            message: "this file reached its download limit",
            code: "download_cap_reached",
        });
    }
    Ok(())
}

/// Counts one download of `file_id` if the file is live, belongs to `object_key`'s
/// owner, is not expired, is under its total cap and under today's `daily_limit`.
/// Returns the file's facts when counted, `None` (and changes nothing) otherwise.
/// One conditional UPDATE on the primary: the check and the count cannot be
/// separated by a concurrent request, and no cache is involved in the decision.
pub async fn count_download(
    db: &crate::db::Db,
    file_id: &str,
    object_key: &str,
    daily_limit: i64,
    now: i64,
) -> Result<Option<FileFacts>, sqlx::Error> {
    let day = now / DAY_MS;
    let sql = format!(
        "UPDATE files SET download_count = download_count + 1, \
         dl_day_count = CASE WHEN dl_day = $3 THEN dl_day_count + 1 ELSE 1 END, dl_day = $3 \
         WHERE id = $1 AND object_key = $2 AND status = 'uploaded' \
         AND (max_downloads IS NULL OR download_count < max_downloads) \
         AND (expires_at IS NULL OR expires_at > $4) \
         AND (dl_day <> $3 OR dl_day_count < $5) RETURNING {FACT_COLUMNS}"
    );
    // On PostgreSQL a crash may forget the last few counted downloads (allowing a few
    // extra): an acceptable trade for not waiting on a WAL flush per download.
    let _writer = db.write_slot().await;
    let row = sqlx::query_as::<_, FactRow>(&sql)
        .bind(file_id.to_string())
        .bind(object_key.to_string())
        .bind(day)
        .bind(now)
        .bind(daily_limit)
        .fetch_optional(db.relaxed_pool())
        .await?;
    Ok(row.map(facts_of))
}

/// `GET /files/download/{user_hash}/{file_id}`: counts the download and answers 303
/// to a short-lived signed blob URL.
///
/// The success path is ONE conditional UPDATE that checks ownership (the object key
/// embeds the owner hash), status, expiry, the total cap and the daily counter, and
/// counts in the same step: with a daily limit of N exactly N concurrent requests
/// win, on both backends. Only a refusal pays for a second query to explain itself.
/// A cached entry only lets a foreign or expired link be refused before that write
/// (its facts cannot change while the file is live); it never admits a download.
pub async fn download(
    State(state): State<AppState>,
    Path((user_hash, file_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let file_id = parse_file_id(&file_id)?;
    let not_found = ApiError::NotFound("file not found");
    if !crate::blob::valid_key(&format!("{user_hash}/{file_id}")) {
        return Err(not_found);
    }
    let object_key = format!("{user_hash}/{file_id}");
    let now = now_ms();
    let daily_limit = state
        .cfg
        .limits
        .daily_downloads_per_file
        .min(i64::MAX as u64) as i64;
    let cached = state.cache.get(&file_id).await;
    if let Some(f) = &cached {
        if f.object_key != object_key {
            return Err(not_found);
        }
        if f.expires_at.is_some_and(|e| e <= now) {
            return Err(LINK_EXPIRED);
        }
    }
    let counted = count_download(&state.db, &file_id, &object_key, daily_limit, now).await?;
    let Some(facts) = counted else {
        let f = live_file(&state, &file_id).await?;
        if f.facts.object_key != object_key {
            return Err(not_found);
        }
        check_shareable(&f, now)?;
        return Err(daily_limit_reached(now));
    };
    if cached.is_none() {
        state.cache.put(&file_id, &facts).await;
    }
    metrics::counter!("hashdrop_downloads_total").increment(1);
    let url = state.blobs.presign_get(
        &object_key,
        Duration::from_secs(state.cfg.limits.download_url_ttl_secs),
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response())
}

fn daily_limit_reached(now: i64) -> ApiError {
    let day = now / DAY_MS;
    ApiError::TooManyRequests {
        message: "daily download limit reached for this file",
        code: "download_limit",
        retry_after: (((day + 1) * DAY_MS - now) / 1000).max(1) as u64,
    }
}

/// `HEAD /files/download/{user_hash}/{file_id}`: the status a GET would get (204
/// where it would redirect), but no download is counted and no blob URL is handed
/// out. Routed explicitly: axum runs a GET handler for HEAD otherwise, and every
/// HEAD (link checkers, previews, `curl -I`) would use up the file's limits.
pub async fn download_head(
    State(state): State<AppState>,
    Path((user_hash, file_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let file_id = parse_file_id(&file_id)?;
    let object_key = format!("{user_hash}/{file_id}");
    let not_found = ApiError::NotFound("file not found");
    if !crate::blob::valid_key(&object_key) {
        return Err(not_found);
    }
    let now = now_ms();
    let f = live_file(&state, &file_id).await?;
    if f.facts.object_key != object_key {
        return Err(not_found);
    }
    check_shareable(&f, now)?;
    let (dl_day, dl_day_count): (i64, i64) =
        sqlx::query_as("SELECT dl_day, dl_day_count FROM files WHERE id = $1")
            .bind(&file_id)
            .fetch_optional(state.db.pool())
            .await?
            .ok_or(not_found)?;
    let daily_limit = state
        .cfg
        .limits
        .daily_downloads_per_file
        .min(i64::MAX as u64) as i64;
    if dl_day == now / DAY_MS && dl_day_count >= daily_limit {
        return Err(daily_limit_reached(now));
    }
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
) -> ApiResult<Json<ShareInfo>> {
    let file_id = parse_file_id(&file_id)?;
    let PublicFile {
        facts: f,
        download_count,
    } = shareable_file(&state, &file_id, now_ms()).await?;
    Ok(Json(ShareInfo {
        downloads_left: f.max_downloads.map(|m| (m - download_count).max(0) as u64),
        download_url: download_url(&state, &f.user_id, &file_id),
        file_id,
        file_name: f.file_name,
        encrypted_size_bytes: f.encrypted_size as u64,
        key_management_mode: KeyMode::parse(&f.key_mode).unwrap_or(KeyMode::Vault),
        expires_at: f.expires_at.map(rfc3339),
    }))
}

/// `GET /d/{file_id}`: the recipient page (`crate::web`), which decrypts in the
/// browser with the key from the URL fragment. The status says whether the share is
/// live (200, else 404 or 410) for clients that do not run the page.
pub async fn share_page(State(state): State<AppState>, Path(file_id): Path<String>) -> Response {
    let status = match parse_file_id(&file_id) {
        Ok(id) => match shareable_file(&state, &id, now_ms()).await {
            Ok(_) => StatusCode::OK,
            Err(ApiError::Gone { .. }) => StatusCode::GONE,
            Err(_) => StatusCode::NOT_FOUND,
        },
        Err(_) => StatusCode::NOT_FOUND,
    };
    crate::web::page(&state, status)
}
