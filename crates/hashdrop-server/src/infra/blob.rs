//! Blob storage behind a small trait. The local implementation is the embedded
//! stand-in for S3 + CloudFront: the server accepts and serves object bytes only
//! through HMAC-signed, expiring URLs for one key and one method. [`s3`] is the
//! scale-out one: clients talk to the bucket directly.

pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::config::S3Config;
use crate::domain::time::now_ms;
use crate::domain::Error;
use crate::infra::crypto::Keys;

/// The store did not answer, or answered that it is failing (5xx): the request may
/// succeed later. Any other store error is a real error (credentials, bucket, bug).
#[derive(Debug, thiserror::Error)]
#[error("object store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// Maps a store error for a client: an outage is a 503 with `Retry-After`, the rest
/// an opaque, logged 500.
pub fn store_error(e: anyhow::Error) -> Error {
    if e.downcast_ref::<StoreUnavailable>().is_some() {
        tracing::warn!(error = format!("{e:#}"), "object store unavailable");
        Error::Unavailable {
            message: "the object store is unavailable; retry later",
            code: "store_unavailable",
        }
    } else {
        Error::Internal(e)
    }
}

/// The type every object is served as: ciphertext is opaque bytes, whatever type
/// an uploader claimed.
pub const OPAQUE_CONTENT_TYPE: &str = "application/octet-stream";

/// One part that an unfinished multipart upload holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPart {
    /// 1-based part number.
    pub number: u64,
    /// Stored length.
    pub size: u64,
    /// The store's entity tag for the part (S3 needs them to complete; may be empty
    /// where a store does not report one).
    pub etag: String,
}

/// Where one part of a multipart upload lies in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpan {
    /// 1-based part number.
    pub number: u64,
    /// Its first byte's offset in the object (a store that assembles the object in
    /// place writes it there).
    pub offset: u64,
    /// Its exact length.
    pub size: u64,
}

/// An object store that hands out presigned URLs.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// URL accepting one `PUT` to `key` until the returned expiry (unix ms).
    /// `size_bytes` is the exact declared ciphertext size: S3 signs it as the
    /// Content-Length, so the store refuses any other body; the local store refuses a
    /// larger one and complete fails a smaller one.
    fn presign_put(&self, key: &str, size_bytes: u64, ttl: Duration) -> (String, i64);
    /// URL serving `key` until it expires.
    fn presign_get(&self, key: &str, ttl: Duration) -> String;
    /// Starts a multipart upload of `key`; returns the store's upload id.
    async fn start_multipart(&self, key: &str) -> anyhow::Result<String>;
    /// URL accepting one `PUT` of `part` of `upload_id`, of exactly its size (signed,
    /// so the store refuses any other length), until the returned expiry (unix ms). A
    /// part sent again replaces the earlier copy.
    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: PartSpan,
        ttl: Duration,
    ) -> (String, i64);
    /// The parts `upload_id` holds, ascending by number.
    async fn list_parts(&self, key: &str, upload_id: &str) -> anyhow::Result<Vec<HeldPart>>;
    /// Joins `parts` (all of them, in order) into the object `key`.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[HeldPart],
    ) -> anyhow::Result<()>;
    /// Drops an unfinished multipart upload and its parts; an unknown or finished one
    /// succeeds.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> anyhow::Result<()>;
    /// Stored size of `key`, `None` when absent (S3's HEAD).
    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>>;
    /// Deletes `key`; deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Stores a local file under `key` (backups).
    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()>;
    /// Copies `key` into a local file (restore).
    async fn get_file(&self, key: &str, dst: &Path) -> anyhow::Result<()>;
    /// Keys under a first-level prefix such as `backups`.
    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>>;
    /// Readiness probe: one real request to the store.
    async fn check(&self) -> anyhow::Result<()>;
    /// Fails with [`StoreUnavailable`] when the store is believed unreachable, so a
    /// caller can refuse work before writing anything. Cheap: may answer from a
    /// recent verdict instead of asking the store.
    async fn available(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// True when every instance uses this same store, so its outage is fleet-wide and
    /// taking one instance out of the load balancer cannot help.
    fn is_shared(&self) -> bool {
        false
    }
}

/// An opened store, plus the local one again when it is local (its HTTP routes need
/// the concrete type; with S3 there are no blob routes at all).
#[derive(Debug)]
pub struct OpenedStore {
    /// The store every caller uses.
    pub store: Arc<dyn BlobStore>,
    /// `Some` for `file://`.
    pub local: Option<Arc<LocalBlobStore>>,
}

/// Opens the store named by a URL: `file://DIR` or `s3://BUCKET?...` (credentials in
/// `s3`, else the standard AWS variables).
pub fn open(url: &str, public_url: &str, keys: Keys, s3: &S3Config) -> anyhow::Result<OpenedStore> {
    if let Some(dir) = url.strip_prefix("file://") {
        let root = PathBuf::from(dir);
        crate::infra::private_fs::create_dir(&root)
            .with_context(|| format!("creating blob dir {}", root.display()))?;
        let local = Arc::new(LocalBlobStore {
            root,
            public_url: public_url.to_string(),
            keys,
            assembly_writers: Default::default(),
        });
        Ok(OpenedStore {
            store: local.clone(),
            local: Some(local),
        })
    } else if url.starts_with("s3://") {
        let parsed = s3::S3Url::parse(url)?;
        let store = s3::S3BlobStore::new(&parsed, s3, |k| std::env::var(k).ok())?;
        Ok(OpenedStore {
            store: Arc::new(store),
            local: None,
        })
    } else {
        anyhow::bail!("unsupported blob_store URL: use file://DIR or s3://BUCKET?endpoint=...")
    }
}

/// Blobs in a local directory, served by this process.
#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    public_url: String,
    keys: Keys,
    /// One writer at a time per multipart upload's assembly file: parts arrive several
    /// at a time, and the kernel lets one write into a file at a time, with the others
    /// spinning on the CPU while they wait (ext4's inode lock: 2.5 to 10 % of the
    /// server's samples during a 4 GiB upload); waiting here they sleep.
    assembly_writers: WriterLocks,
}

/// A lock per file being written, while anyone holds it.
#[derive(Debug, Default)]
struct WriterLocks(std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<WriteLock>>>);

type WriteLock = std::sync::Mutex<()>;

impl WriterLocks {
    /// The lock of `name`, shared with every writer of it that still holds one.
    fn of(&self, name: &str) -> Arc<WriteLock> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lock) = map.get(name).and_then(std::sync::Weak::upgrade) {
            return lock;
        }
        map.retain(|_, lock| lock.strong_count() > 0);
        let lock = Arc::new(WriteLock::default());
        map.insert(name.to_string(), Arc::downgrade(&lock));
        lock
    }
}

/// Checks one path segment of an object key: short, `[A-Za-z0-9._-]`, not dot-led.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Object keys are exactly `prefix/name`; anything else never reaches the filesystem.
pub fn valid_key(key: &str) -> bool {
    let mut parts = key.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if valid_segment(a) && valid_segment(b))
}

/// Opens the object being assembled for one part's write, holding a shared lock
/// until the file is closed. If the upload completed meanwhile (`complete_multipart`
/// links the file into place under an exclusive lock and removes this name), the
/// name no longer leads to the file opened, and nothing may be written into what is
/// now a finished object.
fn open_for_part(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::infra::private_fs::FILE_MODE)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
        .map_err(|e| Error::Internal(anyhow::anyhow!("locking the upload: {e}")))?;
    let opened = file.metadata()?;
    let named = std::fs::metadata(path).ok();
    if named.is_none_or(|m| (m.dev(), m.ino()) != (opened.dev(), opened.ino())) {
        return Err(Error::Conflict("the upload was completed"));
    }
    Ok(file)
}

/// Where the local store keeps the parts of unfinished multipart uploads, one
/// directory per upload id (dot-led, so no object key or listing can reach it).
const MULTIPART_DIR: &str = ".multipart";

/// What a part URL's signature covers besides key, expiry and length: the method,
/// the upload, the part number and where it goes, so a URL for one part can do
/// nothing else.
fn part_method(method: &str, upload_id: &str, number: u64, offset: u64) -> String {
    format!("{method} part {number} at {offset} of {upload_id}")
}

/// In a local upload's directory: the object being assembled, each part written at
/// its offset (so completing is a rename, not a copy of gigabytes).
const ASSEMBLY_FILE: &str = "object";

/// A local upload id: 32 lowercase hex digits, as [`BlobStore::start_multipart`]
/// makes them.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl LocalBlobStore {
    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        if !valid_key(key) {
            anyhow::bail!("invalid object key");
        }
        Ok(self.root.join(key))
    }

    fn upload_dir(&self, upload_id: &str) -> anyhow::Result<PathBuf> {
        if !valid_upload_id(upload_id) {
            anyhow::bail!("invalid upload id");
        }
        Ok(self.root.join(MULTIPART_DIR).join(upload_id))
    }

    fn sign(&self, method: &str, key: &str, exp: i64, max: u64) -> String {
        self.keys.keyed_hash(
            "blob-url",
            format!("{method}\n{key}\n{exp}\n{max}").as_bytes(),
        )
    }

    pub fn check_sig(&self, method: &str, key: &str, q: &SignedQuery) -> Result<(), Error> {
        let forbidden = Error::Forbidden {
            message: "invalid or expired signature",
            code: "bad_signature",
        };
        if !valid_key(key) {
            return Err(forbidden);
        }
        let method = match (&q.upload, q.part) {
            (Some(upload), Some(part)) => part_method(method, upload, part, q.at.unwrap_or(0)),
            (None, None) => method.to_string(),
            _ => return Err(forbidden),
        };
        let data = format!("{method}\n{key}\n{}\n{}", q.exp, q.max.unwrap_or(0));
        if !self.keys.verify_mac("blob-url", data.as_bytes(), &q.sig) {
            return Err(forbidden);
        }
        if q.exp < now_ms() / 1000 {
            return Err(forbidden);
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    fn presign_put(&self, key: &str, size_bytes: u64, ttl: Duration) -> (String, i64) {
        let exp = now_ms() / 1000 + ttl.as_secs() as i64;
        let sig = self.sign("PUT", key, exp, size_bytes);
        (
            format!(
                "{}/blob/{key}?exp={exp}&max={size_bytes}&sig={sig}",
                self.public_url
            ),
            exp * 1000,
        )
    }

    fn presign_get(&self, key: &str, ttl: Duration) -> String {
        let exp = now_ms() / 1000 + ttl.as_secs() as i64;
        let sig = self.sign("GET", key, exp, 0);
        format!("{}/blob/{key}?exp={exp}&sig={sig}", self.public_url)
    }

    async fn start_multipart(&self, key: &str) -> anyhow::Result<String> {
        self.path(key)?;
        let upload_id = crate::infra::crypto::random_hex(16);
        crate::infra::private_fs::create_dir_async(&self.root.join(MULTIPART_DIR)).await?;
        crate::infra::private_fs::create_dir_async(&self.upload_dir(&upload_id)?).await?;
        Ok(upload_id)
    }

    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: PartSpan,
        ttl: Duration,
    ) -> (String, i64) {
        let exp = now_ms() / 1000 + ttl.as_secs() as i64;
        let PartSpan {
            number,
            offset,
            size,
        } = part;
        let sig = self.sign(
            &part_method("PUT", upload_id, number, offset),
            key,
            exp,
            size,
        );
        (
            format!(
                "{}/blob/{key}?upload={upload_id}&part={number}&at={offset}&exp={exp}&max={size}&sig={sig}",
                self.public_url
            ),
            exp * 1000,
        )
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> anyhow::Result<Vec<HeldPart>> {
        self.path(key)?;
        let mut parts = Vec::new();
        let mut rd = match tokio::fs::read_dir(self.upload_dir(upload_id)?).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(parts),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = rd.next_entry().await? {
            // Only finished parts have a bare number as their name.
            let Some(number) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry.metadata().await?.len();
            parts.push(HeldPart {
                number,
                size,
                etag: String::new(),
            });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[HeldPart],
    ) -> anyhow::Result<()> {
        let dst = self.path(key)?;
        let dir = self.upload_dir(upload_id)?;
        for p in parts {
            anyhow::ensure!(
                tokio::fs::metadata(dir.join(p.number.to_string()))
                    .await
                    .is_ok(),
                "part {} is not stored",
                p.number
            );
        }
        let parent = dst.parent().context("object path has a parent")?;
        crate::infra::private_fs::create_dir_async(parent).await?;
        // The parts were written in place, each synced before it was acknowledged:
        // the assembled file becomes the object under its key, create-only. Under an
        // exclusive lock, so no part write is still running into it, and its name in
        // the upload directory goes, so none starts after (see `write_part`).
        let assembled = dir.join(ASSEMBLY_FILE);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let file = match std::fs::File::open(&assembled) {
                Ok(f) => f,
                // Completed before (a retried complete): the object is there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && dst.exists() => return Ok(()),
                Err(e) => return Err(e).context("opening the assembled object"),
            };
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
            match std::fs::hard_link(&assembled, &dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).context("linking the assembled object"),
            }
            std::fs::remove_file(&assembled)?;
            Ok(())
        })
        .await??;
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(error = %e, "removing a completed upload's directory failed; the sweeper will");
        }
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        self.path(key)?;
        match tokio::fs::remove_dir_all(self.upload_dir(upload_id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()> {
        let dst = self.path(key)?;
        if let Some(p) = dst.parent() {
            crate::infra::private_fs::create_dir_async(p).await?;
        }
        let tmp = dst.with_extension(format!("part-{}", crate::infra::crypto::random_hex(4)));
        // copy() keeps the source's mode; blobs are 0600 like everything stored.
        tokio::fs::copy(src, &tmp).await?;
        crate::infra::private_fs::restrict(&tmp, crate::infra::private_fs::FILE_MODE)?;
        tokio::fs::rename(&tmp, &dst).await?;
        Ok(())
    }

    async fn get_file(&self, key: &str, dst: &Path) -> anyhow::Result<()> {
        tokio::fs::copy(self.path(key)?, dst)
            .await
            .context("copying object")?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        if !valid_segment(prefix) {
            anyhow::bail!("invalid prefix");
        }
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(self.root.join(prefix)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = rd.next_entry().await? {
            let name = entry.file_name().to_string_lossy().to_string();
            if valid_segment(&name) && !name.contains(".part-") {
                out.push(format!("{prefix}/{name}"));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn check(&self) -> anyhow::Result<()> {
        let m = tokio::fs::metadata(&self.root).await?;
        anyhow::ensure!(m.is_dir(), "blob root is not a directory");
        Ok(())
    }
}

impl LocalBlobStore {
    /// Removes `.part-*` files (PUT bodies being written) last modified more than
    /// `older_than` ago: no upload can still be writing them, so they are what a
    /// crash left behind. Returns how many were removed.
    pub async fn sweep_parts(&self, older_than: Duration) -> anyhow::Result<u64> {
        let cutoff = std::time::SystemTime::now() - older_than;
        let mut removed = 0;
        let mut prefixes = match tokio::fs::read_dir(&self.root).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        while let Some(prefix) = prefixes.next_entry().await? {
            if !prefix.file_type().await?.is_dir() || prefix.file_name() == MULTIPART_DIR {
                continue;
            }
            let mut files = tokio::fs::read_dir(prefix.path()).await?;
            while let Some(f) = files.next_entry().await? {
                if !f.file_name().to_string_lossy().contains(".part-") {
                    continue;
                }
                let stale = f
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if stale && tokio::fs::remove_file(f.path()).await.is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes the part directories of multipart uploads that nothing touched for
    /// `idle_for`: a directory changes whenever a part arrives, and a file's upload
    /// is failed `pending_upload_ttl_secs` after presign, so past that no live upload
    /// owns it. Normally the delete job of the failed file aborts the upload; this
    /// catches what a crash left (an upload started whose file row was never
    /// written, a server killed while joining). Returns how many were removed.
    pub async fn sweep_multipart(&self, idle_for: Duration) -> anyhow::Result<u64> {
        let cutoff = std::time::SystemTime::now() - idle_for;
        let mut removed = 0;
        let mut uploads = match tokio::fs::read_dir(self.root.join(MULTIPART_DIR)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        while let Some(upload) = uploads.next_entry().await? {
            let idle = upload
                .metadata()
                .await
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            let ours = upload.file_name().to_str().is_some_and(valid_upload_id);
            if idle && ours && tokio::fs::remove_dir_all(upload.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Query string of a signed blob URL.
#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Most bytes a signed PUT may store.
    #[serde(default)]
    pub max: Option<u64>,
    /// MAC over method, key, expiry and `max` (and upload and part, for a part).
    pub sig: String,
    /// A part URL's multipart upload id.
    #[serde(default)]
    pub upload: Option<String>,
    /// A part URL's part number.
    #[serde(default)]
    pub part: Option<u64>,
    /// A part URL's offset in the object.
    #[serde(default)]
    pub at: Option<u64>,
}

/// How long a local PUT may take.
#[derive(Debug, Clone, Copy)]
pub struct PutLimits {
    /// Most bytes to accept.
    pub max_bytes: u64,
    /// Longest wait for the next chunk.
    pub idle: Duration,
    /// When the whole body must have arrived.
    pub deadline: tokio::time::Instant,
}

impl LocalBlobStore {
    /// Streams `body` into a new object `key`: into a private temporary file first,
    /// then linked into place, create-only (an object never changes once written:
    /// GET promises `immutable`). A body passing `max_bytes` is cut off, one that
    /// stalls is abandoned; either way nothing is left behind.
    pub async fn write_new<S, E>(&self, key: &str, body: S, limits: PutLimits) -> Result<u64, Error>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        let dst = self.path(key)?;
        let dir = dst.parent().context("object path has a parent")?;
        let name = dst
            .file_name()
            .and_then(|n| n.to_str())
            .context("object name")?;
        crate::infra::private_fs::create_dir_async(dir).await?;
        let tmp = dir.join(format!(
            "{name}.part-{}",
            crate::infra::crypto::random_hex(6)
        ));
        let result = write_then_link(&tmp, &dst, body, limits).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    /// Writes `body` as part `number` of `upload_id` at `offset` of the object being
    /// assembled, exactly `limits.max_bytes` long, syncs it (and drops it from the page
    /// cache), and only then records the part (an empty marker file named by its
    /// number, as long as the part, sparse). A shorter or longer body is refused and
    /// records nothing; a part sent again overwrites the same bytes (its first PUT may
    /// have landed unacknowledged).
    pub async fn write_part<S, E>(
        &self,
        upload_id: &str,
        number: u64,
        offset: u64,
        mut body: S,
        limits: PutLimits,
    ) -> Result<u64, Error>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        let dir = self.upload_dir(upload_id)?;
        if tokio::fs::metadata(&dir).await.is_err() {
            return Err(Error::NotFound("no such multipart upload"));
        }
        // The part is not held while its bytes are being rewritten: a send that fails
        // halfway must not leave a record of the bytes it damaged, or a resumed upload
        // would skip the part.
        match tokio::fs::remove_file(dir.join(number.to_string())).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let path = dir.join(ASSEMBLY_FILE);
        let file = Arc::new(
            tokio::task::spawn_blocking(move || open_for_part(&path))
                .await
                .map_err(anyhow::Error::from)??,
        );
        let lock = self.assembly_writers.of(upload_id);
        let written = copy_body(&file, Some(lock), offset, &mut body, limits).await?;
        if written != limits.max_bytes {
            return Err(Error::Invalid(format!(
                "part {number} is {written} bytes; its URL was signed for {}",
                limits.max_bytes
            )));
        }
        blocking(move || {
            file.sync_data()?;
            drop_cached(&file, offset, written);
            Ok(())
        })
        .await?;
        let tmp = dir.join(format!(
            "{number}.part-{}",
            crate::infra::crypto::random_hex(6)
        ));
        let marked = async {
            let marker = crate::infra::private_fs::create_file(&tmp).await?;
            marker.set_len(written).await?;
            tokio::fs::rename(&tmp, dir.join(number.to_string())).await
        }
        .await;
        if marked.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        marked?;
        Ok(written)
    }

    /// Removes an object written a moment ago whose upload turned out unwanted.
    pub async fn discard(&self, key: &str) {
        if let Ok(path) = self.path(key) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    /// The file of object `key`, if stored.
    pub async fn object_file(&self, key: &str) -> Option<PathBuf> {
        let path = self.path(key).ok()?;
        tokio::fs::metadata(&path).await.ok().map(|_| path)
    }
}

async fn write_then_link<S, E>(
    tmp: &Path,
    dst: &Path,
    body: S,
    limits: PutLimits,
) -> Result<u64, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let written = write_body(tmp, body, limits).await?;
    // A hard link fails atomically if the name exists; the caller removes `tmp`.
    match tokio::fs::hard_link(tmp, dst).await {
        Ok(()) => Ok(written),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Conflict("object already uploaded"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Streams `body` into the new private file `tmp` within `limits`, synced and dropped
/// from the page cache.
async fn write_body<S, E>(tmp: &Path, mut body: S, limits: PutLimits) -> Result<u64, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let file = Arc::new(
        crate::infra::private_fs::create_file(tmp)
            .await?
            .into_std()
            .await,
    );
    let written = copy_body(&file, None, 0, &mut body, limits).await?;
    blocking(move || {
        file.sync_all()?;
        drop_cached(&file, 0, written);
        Ok(())
    })
    .await?;
    Ok(written)
}

/// Drops `len` bytes of `file` from `offset` on from the page cache once they are
/// synced. An object is read rarely, and seldom right after its upload; its pages
/// would push out more useful ones, and memory freed at once serves the next writes
/// (docs/SERVER.md, "Page cache"). Pages shared with a neighbouring range stay. A hint:
/// it may be ignored.
fn drop_cached(file: &std::fs::File, offset: u64, len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, offset, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// Runs blocking file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(anyhow::Error::from)??)
}

/// Body bytes gathered before one write. The body arrives in chunks of a few KiB to
/// a few hundred; each batch is written by a blocking thread straight from the
/// buffers the chunks arrived in (no copy), one batch going to disk while the next
/// arrives.
const WRITE_BATCH: usize = 1 << 20;

/// Writes batches of body chunks at increasing offsets of one file, one batch in
/// flight at a time.
struct WriteBehind<'f> {
    file: &'f Arc<std::fs::File>,
    /// Taken around each batch when others write into the same file.
    shared: Option<Arc<WriteLock>>,
    in_flight: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl WriteBehind<'_> {
    /// Starts writing `chunks` at `offset` once the batch before has landed.
    async fn write(&mut self, offset: u64, chunks: Vec<bytes::Bytes>) -> Result<(), Error> {
        self.landed().await?;
        let file = self.file.clone();
        let shared = self.shared.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let _turn = shared
                .as_ref()
                .map(|lock| lock.lock().unwrap_or_else(|e| e.into_inner()));
            let mut at = offset;
            for chunk in &chunks {
                file.write_all_at(chunk, at)?;
                at += chunk.len() as u64;
            }
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any.
    async fn landed(&mut self) -> Result<(), Error> {
        match self.in_flight.take() {
            Some(write) => Ok(write.await.map_err(anyhow::Error::from)??),
            None => Ok(()),
        }
    }
}

/// Copies `body` into `file` from `offset` on within `limits`: cut off past
/// `max_bytes`, abandoned when it stalls. Returns the bytes written. When it
/// returns, with or without an error, no write of this body is still running (a
/// part sent again must not be overwritten by the remains of an earlier send). Only
/// a request dropped mid-way (the connection gone) leaves its batch in flight to
/// finish alone: it then writes the bytes that client sent, and no marker.
async fn copy_body<S, E>(
    file: &Arc<std::fs::File>,
    shared: Option<Arc<WriteLock>>,
    offset: u64,
    body: &mut S,
    limits: PutLimits,
) -> Result<u64, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let mut writer = WriteBehind {
        file,
        shared,
        in_flight: None,
    };
    let copied: Result<u64, Error> = async {
        let mut written: u64 = 0;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let stalled = || Error::Stalled("upload stalled; start it again");
        loop {
            let wait = limits
                .deadline
                .min(tokio::time::Instant::now() + limits.idle);
            let next = tokio::time::timeout_at(wait, body.next())
                .await
                .map_err(|_| stalled())?;
            let ended = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|_| Error::Invalid("upload interrupted".into()))?;
                written += chunk.len() as u64;
                if written > limits.max_bytes {
                    return Err(Error::TooLarge("object exceeds the per-file size limit"));
                }
                batch_bytes += chunk.len();
                batch.push(chunk);
            }
            if batch_bytes >= WRITE_BATCH || (ended && batch_bytes > 0) {
                let at = offset + written - batch_bytes as u64;
                writer.write(at, std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            if ended {
                return Ok(written);
            }
        }
    }
    .await;
    let landed = writer.landed().await;
    let written = copied?;
    landed?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("usrh-abc/123e4567-e89b-12d3-a456-426614174000"));
        assert!(valid_key("backups/db-1.sqlite"));
        for bad in [
            "../x/y", "a/../b", "a/b/c", "a", "/a/b", "a/.b", "a/b c", "", "a/",
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    /// Bytes of `path` in the page cache, by util-linux's `fincore`; `None` (and a
    /// notice) where that cannot be told: no `fincore`, or a file system such as
    /// tmpfs that is all page cache.
    fn resident_bytes(path: &Path) -> Option<u64> {
        // 0x01021994: TMPFS_MAGIC, which rustix does not name.
        let on_tmpfs = rustix::fs::statfs(path).is_ok_and(|s| s.f_type == 0x0102_1994);
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(path)
            .output();
        match out {
            Ok(out) if out.status.success() && !on_tmpfs => {
                Some(String::from_utf8_lossy(&out.stdout).trim().parse().ok()?)
            }
            _ => {
                eprintln!("skipped: cannot tell what of {} is cached", path.display());
                None
            }
        }
    }

    fn chunks_of(
        len: usize,
    ) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Unpin {
        let piece = bytes::Bytes::from(vec![7u8; 256 << 10]);
        futures_util::stream::iter((0..len / piece.len()).map(move |_| Ok(piece.clone())))
    }

    fn limits(max_bytes: u64) -> PutLimits {
        PutLimits {
            max_bytes,
            idle: Duration::from_secs(30),
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn stored_bytes_leave_the_page_cache_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore {
            root: dir.path().to_path_buf(),
            public_url: "http://127.0.0.1:1".into(),
            keys: crate::infra::crypto::Keys::new(&crate::infra::crypto::Secrets {
                jwt_secret: "j".repeat(32),
                hmac_secret: "h".repeat(32),
            }),
            assembly_writers: Default::default(),
        };
        const MIB: usize = 1 << 20;

        // A whole object in one PUT.
        let written = store
            .write_new("usr-a/one", chunks_of(24 * MIB), limits(24 << 20))
            .await
            .unwrap();
        assert_eq!(written, 24 << 20);
        let Some(cached) = resident_bytes(&store.path("usr-a/one").unwrap()) else {
            return;
        };
        assert_eq!(cached, 0, "a stored object stays out of the page cache");

        // Two parts of a multipart upload, the second sent first.
        let upload = store.start_multipart("usr-a/two").await.unwrap();
        for (number, offset) in [(2, 8 << 20), (1, 0)] {
            let part = chunks_of(8 * MIB);
            store
                .write_part(&upload, number, offset, part, limits(8 << 20))
                .await
                .unwrap();
        }
        let assembly = store.upload_dir(&upload).unwrap().join(ASSEMBLY_FILE);
        assert_eq!(std::fs::metadata(&assembly).unwrap().len(), 16 << 20);
        assert_eq!(
            resident_bytes(&assembly),
            Some(0),
            "each part leaves the page cache once synced"
        );
    }

    #[test]
    fn writers_of_one_file_share_a_lock_and_the_map_forgets_unused_ones() {
        let locks = WriterLocks::default();
        let a = locks.of("upload-a");
        assert!(
            Arc::ptr_eq(&a, &locks.of("upload-a")),
            "same file, same lock"
        );
        let b = locks.of("upload-b");
        assert!(!Arc::ptr_eq(&a, &b), "other file, other lock");
        let held = a.lock().unwrap();
        assert!(b.try_lock().is_ok(), "another file's writer does not wait");
        assert!(locks.of("upload-a").try_lock().is_err(), "this file's does");
        drop(held);
        drop((a, b));
        let _c = locks.of("upload-c");
        assert_eq!(
            locks.0.lock().unwrap().len(),
            1,
            "locks nobody holds are dropped"
        );
    }
}
