//! The `files` table: a file's row from presign to the end of its life, and the
//! conditional statements that make each transition happen once.

use super::{sql, write_one, Backend, Db, Tx};
use crate::domain::file::{FileFacts, FileStatus, NewSealedMeta, PlainDigest, SealedMeta};
use crate::domain::time::{rfc3339, DAY_MS};

/// A file about to be presigned.
#[derive(Debug)]
pub struct NewFile<'a> {
    /// Its id (a UUID).
    pub id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// `{user_hash}/{file_id}`.
    pub object_key: &'a str,
    /// Display name in clear (empty when `meta` carries it).
    pub file_name: &'a str,
    /// Media type in clear, if given.
    pub mime_type: Option<&'a str>,
    /// The digest, or `None` when complete will carry it.
    pub digest: Option<&'a PlainDigest>,
    /// The sealed name and type, from clients that keep them private.
    pub meta: Option<&'a NewSealedMeta>,
    /// Declared ciphertext size.
    pub encrypted_size: i64,
    /// `vault` or `passphrase`.
    pub key_mode: &'a str,
    /// Owner-set expiry (unix ms).
    pub expires_at: Option<i64>,
    /// Owner-set total download cap.
    pub max_downloads: Option<i64>,
    /// Creation time (unix ms).
    pub now: i64,
    /// For a multipart upload: the store's upload id, the bytes of part 1 and of
    /// each later part.
    pub multipart: Option<(&'a str, u64, u64)>,
}

/// Inserts a `pending` row (the caller reserved what it holds in the same
/// transaction: the whole size for a single PUT, nothing yet for a multipart upload).
pub async fn insert_pending(tx: &mut Tx, f: &NewFile<'_>) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO files (id, user_id, object_key, file_name, mime_type, \
         plaintext_hash, encrypted_size, key_mode, status, expires_at, max_downloads, \
         created_at, updated_at, created_at_rfc3339, keyed_digest, meta_header, meta_sealed, \
         meta_owner, upload_id, first_part_bytes, part_bytes, held_bytes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20)";
    let (plaintext_hash, keyed_digest) = f.digest.map_or(("", ""), PlainDigest::columns);
    let (meta, owner_copy) = match f.meta {
        Some(m) => (&m.public, m.owner_copy.as_str()),
        None => (&NO_META, ""),
    };
    // A single PUT holds its whole size from the start; a multipart upload holds
    // its parts as they are counted (`count_parts`).
    let (upload_id, first_part, part, held) = match f.multipart {
        Some((id, first, part)) => (id, first as i64, part as i64, 0),
        None => ("", 0, 0, f.encrypted_size),
    };
    sql!(
        tx.conn(),
        execute,
        SQL,
        f.id,
        f.user_id,
        f.object_key,
        f.file_name,
        f.mime_type,
        plaintext_hash,
        f.encrypted_size,
        f.key_mode,
        f.expires_at,
        f.max_downloads,
        f.now,
        rfc3339(f.now),
        keyed_digest,
        &meta.meta_header,
        &meta.meta_sealed,
        owner_copy,
        upload_id,
        first_part,
        part,
        held
    )?;
    Ok(())
}

/// The stored form of "no sealed metadata".
static NO_META: SealedMeta = SealedMeta {
    meta_header: String::new(),
    meta_sealed: String::new(),
};

/// What completing an upload needs to know about the owner's file.
#[derive(Debug, sqlx::FromRow)]
pub struct UploadState {
    /// `{user_hash}/{file_id}`.
    pub object_key: String,
    /// Stored status spelling (see [`UploadState::status`]).
    status: String,
    /// Declared ciphertext size.
    pub encrypted_size: i64,
    /// The plaintext SHA-256, or empty.
    plaintext_hash: String,
    /// The keyed digest, or empty.
    keyed_digest: String,
    /// The store's unfinished multipart upload id; empty for a single PUT and once
    /// the file is uploaded.
    upload_id: String,
    first_part_bytes: i64,
    part_bytes: i64,
}

impl UploadState {
    /// The file's state.
    pub fn status(&self) -> Option<FileStatus> {
        FileStatus::parse(&self.status)
    }

    /// The digest presign carried, if any.
    pub fn digest(&self) -> Option<PlainDigest> {
        PlainDigest::from_columns(&self.plaintext_hash, &self.keyed_digest)
    }

    /// For a multipart upload: the store's upload id, the bytes of part 1 and of each
    /// later part.
    pub fn multipart(&self) -> Option<(&str, u64, u64)> {
        (!self.upload_id.is_empty()).then(|| {
            (
                self.upload_id.as_str(),
                self.first_part_bytes.max(0) as u64,
                self.part_bytes.max(0) as u64,
            )
        })
    }
}

/// The owner's file, from the primary (completion decides a write).
pub async fn upload_state(
    db: &Db,
    id: &str,
    owner: &str,
) -> Result<Option<UploadState>, sqlx::Error> {
    const SQL: &str = "SELECT object_key, status, encrypted_size, plaintext_hash, keyed_digest, \
         upload_id, first_part_bytes, part_bytes FROM files WHERE id = $1 AND user_id = $2";
    sql!(db.latest().await?.conn(), query_as fetch_optional, SQL, id, owner)
}

/// `pending` → `uploaded`. False if the file is no longer the owner's pending file.
pub async fn mark_uploaded(
    db: &Db,
    id: &str,
    owner: &str,
    plaintext_size: i64,
    digest: &PlainDigest,
    now: i64,
) -> Result<bool, sqlx::Error> {
    // The store's multipart upload is joined now: the id is forgotten, so that the
    // file's end does not ask the store to abort an upload it no longer has.
    const SQL: &str = "UPDATE files SET status = 'uploaded', plaintext_size = $1, \
         updated_at = $2, plaintext_hash = $5, keyed_digest = $6, upload_id = '' \
         WHERE id = $3 AND user_id = $4 AND status = 'pending'";
    let (plaintext_hash, keyed_digest) = digest.columns();
    let n = sql!(
        db.writer().await?.conn(),
        execute,
        SQL,
        plaintext_size,
        now,
        id,
        owner,
        plaintext_hash,
        keyed_digest
    )?;
    if n == 1 {
        // The ledger of counted parts is only read while the file is pending; rows a
        // failure here leaves go with the file's row.
        const PARTS: &str = "DELETE FROM upload_parts WHERE file_id = $1";
        if let Err(e) = sql!(db.writer().await?.conn(), execute, PARTS, id) {
            tracing::warn!(error = %e, "dropping the part ledger of a completed upload failed");
        }
    }
    Ok(n == 1)
}

/// Counts the parts in `parts` (number, bytes) of pending multipart upload `id` that
/// were not counted before, each once however often its URL is signed, and adds
/// their bytes to what the file holds, never past its declared size (a file that
/// holds its whole size from presign, a single PUT or one presigned before parts were
/// counted, takes nothing more). Returns the bytes added, for the caller to reserve in the same
/// transaction, or `None` when the file is not pending. The caller holds the global
/// usage row (`quota::lock_global`), which serializes this with the end of the
/// file's life.
pub async fn count_parts(
    tx: &mut Tx,
    id: &str,
    parts: &[(u64, u64)],
) -> Result<Option<i64>, sqlx::Error> {
    const FILE: &str = "SELECT COALESCE(held_bytes, encrypted_size), encrypted_size FROM files \
         WHERE id = $1 AND status = 'pending'";
    const HOLD: &str = "UPDATE files SET held_bytes = held_bytes + $1 WHERE id = $2";
    let Some((held, size)): Option<(i64, i64)> =
        sql!(tx.conn(), query_as fetch_optional, FILE, id)?
    else {
        return Ok(None);
    };
    if parts.is_empty() || held >= size {
        return Ok(Some(0));
    }
    // One INSERT for the whole batch: `ON CONFLICT DO NOTHING` skips parts counted
    // before, and RETURNING yields only the rows it inserted.
    let mut statement =
        String::from("INSERT INTO upload_parts (file_id, part_number, bytes) VALUES ");
    for i in 0..parts.len() {
        if i > 0 {
            statement.push_str(", ");
        }
        statement.push_str(&format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3));
    }
    statement.push_str(" ON CONFLICT DO NOTHING RETURNING bytes");
    let counted: Vec<i64> = super::on_conn!(tx.conn(), |c| {
        let mut q = sqlx::query_scalar(&statement).bind(id);
        for &(number, bytes) in parts {
            q = q.bind(number as i64).bind(bytes as i64);
        }
        q.fetch_all(&mut *c).await
    })?;
    let added = counted.iter().sum::<i64>().min(size - held).max(0);
    if added > 0 {
        sql!(tx.conn(), execute, HOLD, added, id)?;
    }
    Ok(Some(added))
}

/// A file whose life a statement of this module just ended.
#[derive(Debug, sqlx::FromRow)]
pub struct EndedFile {
    /// Its id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The object to delete.
    pub object_key: String,
    /// The bytes of quota it held if it was live.
    pub held_bytes: i64,
    /// Whether it held quota until the statement that ended it.
    pub was_live: bool,
    /// The store's unfinished multipart upload id, or empty.
    pub upload_id: String,
}

/// A removed row's columns, `was_live` from its last status.
const REMOVED_COLUMNS: &str =
    "id, user_id, object_key, COALESCE(held_bytes, encrypted_size) AS held_bytes, \
     status IN ('pending', 'uploaded') AS was_live, \
     upload_id";

/// Moves a live file to `to` (`failed` or `deleted`). The conditional UPDATE is the
/// transition: of concurrent callers only the one it returns the row to may release
/// the quota.
pub async fn end_life(
    tx: &mut Tx,
    id: &str,
    to: FileStatus,
    now: i64,
) -> Result<Option<EndedFile>, sqlx::Error> {
    const SQL: &str = "UPDATE files SET status = $1, updated_at = $2 \
         WHERE id = $3 AND status IN ('pending', 'uploaded') \
         RETURNING id, user_id, object_key, COALESCE(held_bytes, encrypted_size) AS held_bytes, \
         TRUE AS was_live, upload_id";
    sql!(tx.conn(), query_as fetch_optional, SQL, to.as_str(), now, id)
}

/// Removes the owner's file row in any state. Of concurrent deletes only the one the
/// DELETE returns the row to sees it.
pub async fn remove_owned(
    tx: &mut Tx,
    id: &str,
    owner: &str,
) -> Result<Option<EndedFile>, sqlx::Error> {
    let statement =
        format!("DELETE FROM files WHERE id = $1 AND user_id = $2 RETURNING {REMOVED_COLUMNS}");
    sql!(tx.conn(), query_as fetch_optional, &statement, id, owner)
}

/// Removes every file row of `owner` (account deletion).
pub async fn remove_all_of(tx: &mut Tx, owner: &str) -> Result<Vec<EndedFile>, sqlx::Error> {
    let statement = format!("DELETE FROM files WHERE user_id = $1 RETURNING {REMOVED_COLUMNS}");
    sql!(tx.conn(), query_as fetch_all, &statement, owner)
}

/// Removes every file row (the dev-mode reset).
pub async fn remove_every(tx: &mut Tx) -> Result<Vec<EndedFile>, sqlx::Error> {
    let statement = format!("DELETE FROM files RETURNING {REMOVED_COLUMNS}");
    sql!(tx.conn(), query_as fetch_all, &statement)
}

/// One line of the owner's listing.
#[derive(Debug, sqlx::FromRow)]
pub struct Summary {
    /// Id.
    pub id: String,
    /// Display name in clear (empty when sealed).
    pub file_name: String,
    /// The sealed name and type.
    #[sqlx(flatten)]
    pub meta: SealedMeta,
    /// The owner's copy of them.
    pub meta_owner: String,
    /// Ciphertext bytes.
    pub encrypted_size: i64,
    /// Status spelling.
    pub status: String,
    /// `vault` or `passphrase`.
    pub key_mode: String,
    /// Creation time (unix ms).
    pub created_at: i64,
}

/// Every file of `owner`, newest first. May lag (replica).
pub async fn list(db: &Db, owner: &str) -> Result<Vec<Summary>, sqlx::Error> {
    const SQL: &str = "SELECT id, file_name, meta_header, meta_sealed, meta_owner, \
         encrypted_size, status, key_mode, created_at \
         FROM files WHERE user_id = $1 ORDER BY created_at DESC, id";
    sql!(db.lagging().await?.conn(), query_as fetch_all, SQL, owner)
}

/// The owner's listing: how many files, and the JSON array of
/// `hashdrop_wire::FileSummary` for them, newest first. May lag (replica).
///
/// `GET /api/files/all` answers this text as is, so each backend builds it its
/// fastest way, measured (docs/BENCHMARKS.md). SQLite builds the array itself
/// (`json_group_array`): one row per request instead of a row per file crossing
/// sqlx's connection thread, with the creation time stored as RFC 3339 text when
/// the row is made (formatting it per row in SQL cost as much as the rest).
/// PostgreSQL sends the [`list`] rows, which serde encodes: its `json_agg` costs it
/// more than the rows cost us. The store suite checks that both databases give
/// exactly what [`list`] rows map to.
pub async fn listing_json(db: &Db, owner: &str) -> Result<(i64, String), sqlx::Error> {
    // Rows without sealed metadata omit the key, as serde does for the PostgreSQL
    // path; choosing between two objects costs nothing measurable for such rows, where
    // a `CASE` inside the object cost 17% (Python sqlite3, 200 rows: 88 vs 103 us).
    // The rows come sorted from the subquery, which reads them in the order of the
    // `files_user_listing` index: an `ORDER BY` inside `json_group_array` sorted them
    // again in a temporary B-tree on every request (a fifth of the query's time).
    // SQLite keeps a FROM-subquery's ORDER BY when the outer query aggregates with
    // anything but count/min/max, so the array has the subquery's order; the store
    // suite checks the order, ties included.
    const SQLITE: &str = "SELECT COUNT(*), json_group_array(CASE WHEN meta_sealed = '' \
         THEN json_object('file_id', id, 'file_name', file_name, \
         'encrypted_size_bytes', encrypted_size, 'status', status, \
         'key_management_mode', key_mode, 'created_at', created_at_rfc3339) \
         ELSE json_object('file_id', id, 'file_name', file_name, \
         'encrypted_size_bytes', encrypted_size, 'status', status, \
         'key_management_mode', key_mode, 'created_at', created_at_rfc3339, \
         'metadata', json_object('age_header', meta_header, 'sealed', meta_sealed, \
         'owner_copy', NULLIF(meta_owner, ''))) END) \
         FROM (SELECT id, file_name, encrypted_size, status, key_mode, created_at_rfc3339, \
         meta_header, meta_sealed, meta_owner FROM files WHERE user_id = $1 \
         ORDER BY created_at DESC, id)";
    if db.backend() == Backend::Sqlite {
        return sql!(db.lagging().await?.conn(), query_as fetch_one, SQLITE, owner);
    }
    let rows = list(db, owner).await?;
    let listed: Vec<Listed> = rows.iter().map(Listed::from).collect();
    let json = serde_json::to_string(&listed).map_err(|e| sqlx::Error::Encode(e.into()))?;
    Ok((listed.len() as i64, json))
}

/// One element of the listing, named as the API names it.
#[derive(Debug, serde::Serialize)]
struct Listed<'a> {
    file_id: &'a str,
    file_name: &'a str,
    encrypted_size_bytes: i64,
    status: &'a str,
    key_management_mode: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<ListedMeta<'a>>,
}

/// `hashdrop_wire::SealedMetadata`, named as the API names it.
#[derive(Debug, serde::Serialize)]
struct ListedMeta<'a> {
    age_header: &'a str,
    sealed: &'a str,
    owner_copy: Option<&'a str>,
}

impl<'a> From<&'a Summary> for Listed<'a> {
    fn from(f: &'a Summary) -> Self {
        Listed {
            metadata: f.meta.is_present().then(|| ListedMeta {
                age_header: &f.meta.meta_header,
                sealed: &f.meta.meta_sealed,
                owner_copy: Some(f.meta_owner.as_str()).filter(|c| !c.is_empty()),
            }),
            file_id: &f.id,
            file_name: &f.file_name,
            encrypted_size_bytes: f.encrypted_size,
            status: &f.status,
            key_management_mode: &f.key_mode,
            created_at: rfc3339(f.created_at),
        }
    }
}

/// Everything the owner may see about one file.
#[derive(Debug, sqlx::FromRow)]
pub struct Details {
    /// Id.
    pub id: String,
    /// Display name.
    pub file_name: String,
    /// Status spelling.
    pub status: String,
    /// Plaintext bytes (0 until complete).
    pub plaintext_size: i64,
    /// Ciphertext bytes.
    pub encrypted_size: i64,
    /// `{user_hash}/{file_id}`.
    pub object_key: String,
    /// `vault` or `passphrase`.
    pub key_mode: String,
    /// The plaintext SHA-256 (empty until known, or when a keyed digest is).
    pub plaintext_hash: String,
    /// The keyed digest (empty until known, or for older uploads).
    pub keyed_digest: String,
    /// The sealed name and type.
    #[sqlx(flatten)]
    pub meta: SealedMeta,
    /// The owner's copy of them.
    pub meta_owner: String,
    /// Owner-set expiry (unix ms).
    pub expires_at: Option<i64>,
    /// Owner-set total download cap.
    pub max_downloads: Option<i64>,
    /// Downloads counted so far.
    pub download_count: i64,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// From the primary: the read decides a write or must see the caller's own.
    Latest,
    /// May lag behind the primary (a replica, when configured).
    MayLag,
}

/// The owner's files whose id starts with `prefix` (hex and dashes only), newest
/// first, at most 100.
pub async fn by_prefix(
    db: &Db,
    owner: &str,
    prefix: &str,
    freshness: Freshness,
) -> Result<Vec<Details>, sqlx::Error> {
    const SQL: &str = "SELECT id, file_name, status, plaintext_size, encrypted_size, \
         object_key, key_mode, plaintext_hash, keyed_digest, meta_header, meta_sealed, \
         meta_owner, expires_at, max_downloads, download_count \
         FROM files WHERE user_id = $1 AND id LIKE $2 ORDER BY created_at DESC LIMIT 100";
    let mut c = match freshness {
        Freshness::Latest => db.latest().await?,
        Freshness::MayLag => db.lagging().await?,
    };
    sql!(c.conn(), query_as fetch_all, SQL, owner, format!("{prefix}%"))
}

/// The plaintext SHA-256 column of the owner's file (empty unless an older client
/// recorded one). May lag.
pub async fn plaintext_sha256(
    db: &Db,
    id: &str,
    owner: &str,
) -> Result<Option<String>, sqlx::Error> {
    const SQL: &str = "SELECT plaintext_hash FROM files WHERE id = $1 AND user_id = $2";
    sql!(db.lagging().await?.conn(), query_scalar fetch_optional, SQL, id, owner)
}

/// Whether a `pending` file owns `object_key`.
pub async fn is_pending_object(db: &Db, id: &str, object_key: &str) -> Result<bool, sqlx::Error> {
    const SQL: &str =
        "SELECT COUNT(*) FROM files WHERE id = $1 AND object_key = $2 AND status = 'pending'";
    let n: i64 = sql!(db.latest().await?.conn(), query_scalar fetch_one, SQL, id, object_key)?;
    Ok(n > 0)
}

/// A live, downloadable file as the public paths see it.
#[derive(Debug, sqlx::FromRow)]
pub struct PublicFile {
    /// What never changes while it lives.
    #[sqlx(flatten)]
    pub facts: FileFacts,
    /// Downloads counted so far.
    pub download_count: i64,
    /// The UTC day of the daily counter.
    pub dl_day: i64,
    /// Downloads counted on `dl_day`.
    pub dl_day_count: i64,
}

impl PublicFile {
    /// Downloads already counted today.
    pub fn downloads_today(&self, now: i64) -> i64 {
        if self.dl_day == now / DAY_MS {
            self.dl_day_count
        } else {
            0
        }
    }
}

const FACT_COLUMNS: &str = "user_id, object_key, file_name, encrypted_size, key_mode, \
     expires_at, max_downloads, keyed_digest, meta_header, meta_sealed";

/// The `uploaded` file `id`, from the primary: used where the answer must match
/// what the download UPDATE decides.
pub async fn uploaded(db: &Db, id: &str) -> Result<Option<PublicFile>, sqlx::Error> {
    let statement = format!(
        "SELECT {FACT_COLUMNS}, download_count, dl_day, dl_day_count FROM files \
         WHERE id = $1 AND status = 'uploaded'"
    );
    sql!(db.latest().await?.conn(), query_as fetch_optional, &statement, id)
}

/// Counts one download of `id` if the file is live, is `object_key`'s, is not
/// expired, is under its total cap and under today's `daily_limit`. Returns the
/// file's facts when counted, `None` (and changes nothing) otherwise: one
/// conditional UPDATE, so the check and the count cannot be separated by a
/// concurrent request. On PostgreSQL a crash may forget the last few counted
/// downloads (allowing a few extra): an acceptable trade for not waiting on a WAL
/// flush per download.
pub async fn count_download(
    db: &Db,
    id: &str,
    object_key: &str,
    daily_limit: i64,
    now: i64,
) -> Result<Option<FileFacts>, sqlx::Error> {
    let statement = format!(
        "UPDATE files SET download_count = download_count + 1, \
         dl_day_count = CASE WHEN dl_day = $3 THEN dl_day_count + 1 ELSE 1 END, dl_day = $3 \
         WHERE id = $1 AND object_key = $2 AND status = 'uploaded' \
         AND (max_downloads IS NULL OR download_count < max_downloads) \
         AND (expires_at IS NULL OR expires_at > $4) \
         AND (dl_day <> $3 OR dl_day_count < $5) RETURNING {FACT_COLUMNS}"
    );
    sql!(
        db.relaxed_writer().await?.conn(),
        query_as fetch_optional,
        &statement,
        id,
        object_key,
        now / DAY_MS,
        now,
        daily_limit
    )
}

/// Pending uploads presigned before `cutoff`, at most 500.
pub async fn stale_pending(db: &Db, cutoff: i64) -> Result<Vec<String>, sqlx::Error> {
    const SQL: &str = "SELECT id FROM files WHERE status = 'pending' AND created_at < $1 LIMIT 500";
    sql!(db.latest().await?.conn(), query_scalar fetch_all, SQL, cutoff)
}

/// Uploaded files whose expiry is at or before `now`, at most 500 (expired means
/// `expires_at <= now`, as on the download path).
pub async fn expired(db: &Db, now: i64) -> Result<Vec<String>, sqlx::Error> {
    const SQL: &str = "SELECT id FROM files WHERE status = 'uploaded' \
         AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT 500";
    sql!(db.latest().await?.conn(), query_scalar fetch_all, SQL, now)
}

/// Removes `failed`/`deleted` records last changed before `cutoff`.
pub async fn purge_ended(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM files WHERE status IN ('failed', 'deleted') AND updated_at < $1";
    write_one(db, SQL, cutoff).await
}

/// Zeroes daily download counters of days before `now`'s.
pub async fn reset_day_counters(db: &Db, now: i64) -> Result<u64, sqlx::Error> {
    const SQL: &str = "UPDATE files SET dl_day_count = 0 WHERE dl_day < $1 AND dl_day_count > 0";
    write_one(db, SQL, now / DAY_MS).await
}
