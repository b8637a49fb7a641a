//! Multipart uploads for large files: the file is cut into parts on STREAM chunk
//! boundaries (`hashdrop_crypto::PartLayout`), each part sealed on its own and sent
//! to its own signed URL, several at a time and in any order, and an interrupted
//! upload resumes where it stopped.
//!
//! Resuming re-encrypts the parts the server does not hold under the same key and
//! nonces as the first run. That is safe only while their plaintext is unchanged, so
//! the state in `HASHDROP_HOME/uploads/` records each part's keyed digest *before* the
//! part is sent: a part whose plaintext now hashes differently means the file
//! changed, and the upload starts over with a fresh key. The state holds no secret in
//! clear: the age header (public: it is the start of the object) and, for a vault-mode
//! file, its link key sealed to the account key; both are opened with the vault (or
//! the file's passphrase) when the upload resumes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use hashdrop_client::HttpError;
use hashdrop_crypto::{to_hex, Digest32, Encryption, PartLayout, CHUNK_SIZE};
use hashdrop_wire::{PartPlan, PartUrl, PartUrlsRequest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{transport_error, Explain};
use crate::error::fail;
use crate::home::Home;
use crate::util::progress;
use crate::Ctx;

/// Plaintext bytes per part: 8 MiB (a power of two, as the layout needs, and above
/// S3's 5 MiB minimum part once sealed).
pub const PART_SIZE: u64 = hashdrop_crypto::DEFAULT_PART_SIZE;

/// Files above this many plaintext bytes go in parts; smaller ones in one PUT.
pub const MULTIPART_ABOVE: u64 = 2 * PART_SIZE;

/// Parts sent at the same time unless `--parallel` says otherwise. A part spends most
/// of its time on the wire waiting for the store to make it durable, holding no
/// buffer then, so more parts wait than are held in memory.
pub const DEFAULT_PARALLEL: usize = 12;

/// Parts sealed at the same time: one per core of the machines we measure on.
const SEALING_AT_ONCE: usize = 2;

/// Sealed parts held in memory at once (being sealed, or being written to the
/// socket): this, not `--parallel`, bounds the client's memory, since a part's buffer
/// comes back once its last byte is written, while the part still waits for the
/// store to answer.
const SEALED_IN_MEMORY: usize = 4;

/// Tries per part before the upload stops (it can then be resumed).
const PART_ATTEMPTS: u32 = 3;

/// Part URLs asked for in one request (the upload rate limit counts requests).
const URL_BATCH: usize = 64;

/// Version of the state file's layout.
pub const STATE_VERSION: u32 = 1;

/// What an interrupted multipart upload needs to continue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    /// Layout version.
    pub version: u32,
    /// Server the upload goes to.
    pub server: String,
    /// The file, as given (canonical).
    pub path: PathBuf,
    /// Its size and modification time when the upload started.
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub modified_ns: u128,
    /// `vault` or `passphrase`.
    pub key_mode: String,
    /// The server's file id.
    pub file_id: String,
    /// Display name (for the final report; the server holds it sealed).
    pub name: String,
    /// Plaintext bytes per part.
    pub part_size: u64,
    /// The age header, base64 (public: the object starts with it).
    pub header: String,
    /// Vault mode: the file's link key as an age file to the account key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_link_key: Option<String>,
    /// Part index (0-based) → keyed digest (hex) of its plaintext, recorded before the
    /// part is first sent.
    #[serde(default)]
    pub part_digests: std::collections::BTreeMap<u64, String>,
}

impl UploadState {
    /// The state file's name for `path` uploaded to `server`.
    fn file_name(server: &str, path: &Path) -> String {
        let mut h = Sha256::new();
        h.update(server.as_bytes());
        h.update([0]);
        h.update(path.as_os_str().as_encoded_bytes());
        format!("uploads/{}.json", &to_hex(&h.finalize().into())[..32])
    }

    /// The saved state of an interrupted upload of `path` to `server`, if any. A state
    /// file that cannot be read is treated as absent (and replaced when the new upload
    /// saves its own).
    pub fn load(home: &Home, server: &str, path: &Path) -> Option<UploadState> {
        let bytes = home.read(&Self::file_name(server, path)).ok()??;
        serde_json::from_slice::<UploadState>(&bytes)
            .ok()
            .filter(|s| s.version == STATE_VERSION && s.server == server && s.path == path)
    }

    /// Writes the state (0600) through a temporary file and a rename, so a kill leaves
    /// the old state or the new one. Not fsynced: it is rewritten before every part,
    /// and a state lost to a power cut only means the upload starts over (a part held
    /// by the server without a recorded digest is never trusted).
    pub fn save(&self, home: &Home) -> anyhow::Result<()> {
        use std::io::Write as _;
        home.ensure()?;
        let dir = home.path("uploads");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let target = home.path(&Self::file_name(&self.server, &self.path));
        let mut tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_context(|| format!("writing in {}", dir.display()))?;
        tmp.write_all(&serde_json::to_vec(self)?)?;
        tmp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", target.display()))?;
        Ok(())
    }

    /// Removes the state (the upload finished or was abandoned).
    pub fn remove(&self, home: &Home) {
        let _ = home.remove(&Self::file_name(&self.server, &self.path));
    }

    /// True when the file still has the size and modification time it had.
    pub fn matches_file(&self, size: u64, modified_ns: u128) -> bool {
        self.size == size && self.modified_ns == modified_ns
    }

    /// The saved header bytes.
    pub fn header_bytes(&self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.header)
            .context("the saved upload state is damaged (header)")
    }
}

/// The path made absolute, so a state file is found whatever the working directory.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The file's modification time in nanoseconds since the epoch (0 if unknown).
pub fn modified_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// How the object of a file of `plaintext_len` bytes is cut, as the server wants it.
pub fn plan(layout: &PartLayout) -> PartPlan {
    let sealed_part = PART_SIZE + PART_SIZE / CHUNK_SIZE as u64 * hashdrop_crypto::TAG_SIZE as u64;
    let first = layout.ciphertext_range(0);
    PartPlan {
        first_part_bytes: first.end - first.start,
        part_bytes: sealed_part,
    }
}

/// What [`send`] did.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The file's keyed digest.
    pub keyed_digest: Digest32,
    /// Parts sent by this run.
    pub parts_sent: u64,
    /// Parts the server already held.
    pub parts_reused: u64,
    /// Ciphertext bytes the server already held.
    pub reused_bytes: u64,
}

/// The file changed since its upload started: the parts cannot be sealed again under
/// the same key.
#[derive(Debug, thiserror::Error)]
#[error("part {part} of the file changed since the upload started")]
pub struct FileChanged {
    /// 1-based part number.
    pub part: u64,
}

/// Sends every part of `path` the server does not hold (`held`, 1-based numbers),
/// `parallel` at a time, recording each part's digest in `state` before sending it.
/// Parts already held are checked against their recorded digests (read, not sent).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    ctx: &Ctx,
    path: &Path,
    encryption: Arc<Encryption>,
    layout: PartLayout,
    state: Arc<Mutex<UploadState>>,
    held: &[u64],
    parallel: usize,
) -> anyhow::Result<Sent> {
    let count = layout.part_count();
    let file = Arc::new(std::fs::File::open(path).map_err(|e| {
        fail(
            "no_file",
            format!("cannot read {} ({e})", path.display()),
            "check the path",
        )
    })?);
    let mut digests: Vec<Option<Digest32>> = vec![None; count as usize];
    let mut reused_bytes = 0;

    // Parts on the server: their plaintext must be what was sent.
    for &number in held {
        let index = number - 1;
        let digest = {
            let (file, enc, layout) = (file.clone(), encryption.clone(), layout);
            tokio::task::spawn_blocking(move || -> anyhow::Result<Digest32> {
                let range = layout.plaintext_range(index);
                let mut plain = vec![0u8; (range.end - range.start) as usize];
                read_part(&file, &layout, index, &mut plain)?;
                Ok(enc.part_digest(&layout, index, &plain)?)
            })
            .await??
        };
        let recorded = state
            .lock()
            .expect("state")
            .part_digests
            .get(&index)
            .cloned();
        if recorded.as_deref() != Some(to_hex(&digest).as_str()) {
            return Err(FileChanged { part: number }.into());
        }
        digests[index as usize] = Some(digest);
        let c = layout.ciphertext_range(index);
        reused_bytes += c.end - c.start;
    }

    let todo: Vec<u64> = (1..=count).filter(|n| !held.contains(n)).collect();
    let bar = progress(layout.ciphertext_len(), "uploading");
    bar.inc(reused_bytes);
    let sealer = Sealer {
        file,
        encryption: encryption.clone(),
        layout,
        sealing: Arc::new(tokio::sync::Semaphore::new(SEALING_AT_ONCE)),
        pool: BufferPool::new(SEALED_IN_MEMORY),
    };
    let file_id = state.lock().expect("state").file_id.clone();
    let home = ctx.home().clone();
    // One stream over every part to send: a batch's URLs are asked for when the parts
    // before it have all been taken up, so `parallel` parts stay on the wire across
    // batch boundaries instead of draining to none at the end of each batch.
    let urls = futures_util::stream::iter(todo.chunks(URL_BATCH).map(<[u64]>::to_vec))
        .then(|batch| part_urls(ctx, &file_id, batch))
        .map_ok(|urls| futures_util::stream::iter(urls.into_iter().map(anyhow::Ok)))
        .try_flatten();
    let results = urls
        .map_ok(|u| {
            let (sealer, state, home, bar) =
                (sealer.clone(), state.clone(), home.clone(), bar.clone());
            async move {
                let index = u.part_number - 1;
                let (sealed, digest) = sealer.seal(index).await?;
                // Writing the state syncs it to disk: not on a thread that drives
                // the other parts' sends.
                tokio::task::spawn_blocking(move || record_digest(&state, &home, index, &digest))
                    .await??;
                put_part(ctx, &u, sealed, || sealer.seal_again(index, &digest)).await?;
                bar.inc(u.size_bytes);
                anyhow::Ok((index, digest))
            }
        })
        .try_buffer_unordered(parallel.max(1))
        .try_collect::<Vec<_>>()
        .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            bar.finish_and_clear();
            return Err(e);
        }
    };
    for (index, digest) in results {
        digests[index as usize] = Some(digest);
    }
    bar.finish_and_clear();
    let digests: Vec<Digest32> = digests
        .into_iter()
        .map(|d| d.context("a part was neither held nor sent"))
        .collect::<anyhow::Result<_>>()?;
    Ok(Sent {
        keyed_digest: encryption.keyed_digest(&layout, &digests)?,
        parts_sent: todo.len() as u64,
        parts_reused: held.len() as u64,
        reused_bytes,
    })
}

/// Signed URLs for the parts in `batch`, checked to be exactly those asked for.
async fn part_urls(ctx: &Ctx, file_id: &str, batch: Vec<u64>) -> anyhow::Result<Vec<PartUrl>> {
    let urls: Vec<PartUrl> = ctx
        .api
        .authed(|c| {
            c.part_urls(&PartUrlsRequest {
                file_id: file_id.to_string(),
                part_numbers: batch.clone(),
            })
        })
        .await?
        .map_err(|e| e.into_user("upload part"))?
        .parts;
    // Trust no part number the server did not get asked for.
    if urls.len() != batch.len() || urls.iter().any(|u| !batch.contains(&u.part_number)) {
        return Err(fail(
            "bad_answer",
            "the server answered part URLs for parts that were not asked for",
            "check that --server points at a Hashdrop server",
        ));
    }
    Ok(urls)
}

/// Reads the plaintext of part `index` into `into` (exactly its length); a file that
/// has become shorter is a changed file.
fn read_part(
    file: &std::fs::File,
    layout: &PartLayout,
    index: u64,
    into: &mut [u8],
) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(into, layout.plaintext_range(index).start)
        .map_err(|e| read_error(e, index))
}

/// A read of part `index` that failed; running out of file means the file changed
/// (became shorter) since the upload started.
fn read_error(e: std::io::Error, index: u64) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FileChanged { part: index + 1 }.into()
    } else {
        e.into()
    }
}

/// Seals parts into pooled buffers, at most [`SEALING_AT_ONCE`] at a time.
#[derive(Clone)]
struct Sealer {
    file: Arc<std::fs::File>,
    encryption: Arc<Encryption>,
    layout: PartLayout,
    sealing: Arc<tokio::sync::Semaphore>,
    pool: BufferPool,
}

impl Sealer {
    /// Part `index` sealed, as a body that returns its buffer to the pool once sent,
    /// and its keyed digest.
    async fn seal(&self, index: u64) -> anyhow::Result<(bytes::Bytes, Digest32)> {
        let loan = self.pool.take().await;
        let turn = self
            .sealing
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (file, enc, layout) = (self.file.clone(), self.encryption.clone(), self.layout);
        let Loan { buf, permit } = loan;
        let (sealed, digest) = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            seal_part(&file, &enc, &layout, index, buf)
        })
        .await??;
        Ok((self.pool.body(sealed, permit), digest))
    }

    /// Part `index` sealed again for another attempt: the same bytes as before only
    /// if its plaintext still has the digest it was first sealed with (same key and
    /// nonces: different plaintext would leak both versions).
    async fn seal_again(&self, index: u64, first: &Digest32) -> anyhow::Result<bytes::Bytes> {
        let (sealed, digest) = self.seal(index).await?;
        if digest != *first {
            return Err(FileChanged { part: index + 1 }.into());
        }
        Ok(sealed)
    }
}

/// Part buffers, reused, and at most a fixed number lent out at once. A fresh 8 MiB
/// allocation per part makes the peak memory grow with the number of parts sent (the
/// allocator keeps freed buffers in the arena of whichever thread freed them).
#[derive(Clone)]
struct BufferPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    loans: Arc<tokio::sync::Semaphore>,
}

/// A buffer lent by a [`BufferPool`] (contents and length unspecified), and the
/// permit that counts it.
struct Loan {
    buf: Vec<u8>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl BufferPool {
    fn new(most: usize) -> Self {
        Self {
            free: Arc::default(),
            loans: Arc::new(tokio::sync::Semaphore::new(most)),
        }
    }

    /// A buffer, once fewer than the most are lent out.
    async fn take(&self) -> Loan {
        let permit = self
            .loans
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let buf = self.free.lock().expect("pool").pop().unwrap_or_default();
        Loan { buf, permit }
    }

    /// `buf` as a request body that returns it here once sent (or dropped).
    fn body(&self, buf: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// A buffer on loan from a [`BufferPool`]; its permit is released after the buffer is
/// back (fields drop after `drop` runs), so the next borrower finds it.
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = self.pool.free.lock() {
            free.push(buf);
        }
    }
}

/// Reads and seals part `index` in one buffer (each chunk read into its sealed place
/// and sealed there); returns its ciphertext and digest.
fn seal_part(
    file: &std::fs::File,
    enc: &Encryption,
    layout: &PartLayout,
    index: u64,
    mut buf: Vec<u8>,
) -> anyhow::Result<(Vec<u8>, Digest32)> {
    use std::os::unix::fs::FileExt;
    let c = layout.ciphertext_range(index);
    buf.resize((c.end - c.start) as usize, 0);
    let digest = enc
        .seal_part_reading(layout, index, &mut buf, |offset, slot| {
            file.read_exact_at(slot, offset)
        })
        .map_err(|e| match e {
            hashdrop_crypto::CryptoError::Io(io) => read_error(io, index),
            e => e.into(),
        })?;
    Ok((buf, digest))
}

/// Records a part's digest before the part is sent; a different digest recorded by
/// an earlier run means the plaintext changed, and sealing it again under the same
/// nonce would leak both versions.
fn record_digest(
    state: &Mutex<UploadState>,
    home: &Home,
    index: u64,
    digest: &Digest32,
) -> anyhow::Result<()> {
    let mut s = state.lock().expect("state");
    let hex = to_hex(digest);
    match s.part_digests.get(&index) {
        Some(known) if *known == hex => Ok(()),
        Some(_) => Err(FileChanged { part: index + 1 }.into()),
        None => {
            s.part_digests.insert(index, hex);
            s.save(home)
        }
    }
}

/// PUTs one sealed part to its signed URL; `again` seals it anew for another attempt.
async fn put_part<F, Fut>(
    ctx: &Ctx,
    url: &PartUrl,
    sealed: bytes::Bytes,
    mut again: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bytes::Bytes>>,
{
    ctx.api.trace(&reqwest::Method::PUT, &url.url);
    // A part is sent again: a dropped connection, a store that is briefly failing
    // (5xx) or rate limiting (429) should not end an upload of thousands of parts. It
    // is sealed again rather than kept, so that its buffer is free for the next part
    // while this one waits for the store's answer.
    let mut first = Some(sealed);
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        let sealed = match first.take() {
            Some(sealed) => sealed,
            None => again().await?,
        };
        let len = sealed.len();
        // A stream body, because reqwest keeps a copy of a `Bytes` body until the
        // answer (to follow a redirect), which would hold the buffer that long.
        let body = reqwest::Body::wrap_stream(futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(sealed)
        }));
        let sent = ctx
            .api
            .http()
            .put(&url.url)
            .header(CONTENT_LENGTH, len)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await;
        let retry = match &sent {
            Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
            Err(e) => !e.is_builder(),
        };
        if !retry || attempt == PART_ATTEMPTS {
            break sent.map_err(|e| transport_error(e, &ctx.api.base()))?;
        }
        // A rate-limited part waits as long as the server asks (up to a minute).
        let asked = sent
            .ok()
            .and_then(|r| r.headers().get(reqwest::header::RETRY_AFTER).cloned())
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(0, |secs| secs.min(60) * 1000);
        let wait = asked.max(500 << attempt);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    };
    if resp.status().is_success() {
        return Ok(());
    }
    let e = HttpError::from_response(resp).await;
    Err(if e.status.as_u16() == 403 {
        fail(
            "upload_refused",
            format!(
                "the storage refused part {} ({})",
                url.part_number,
                e.message()
            ),
            "the part's link may have expired: run the upload again to resume it",
        )
    } else {
        e.into_user("upload part")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pool_lends_at_most_its_buffers_and_a_sent_body_gives_its_back() {
        let pool = BufferPool::new(2);
        let first = pool.take().await;
        let second = pool.take().await;
        let mut third = Box::pin(pool.take());
        assert!(
            futures_util::poll!(third.as_mut()).is_pending(),
            "a third buffer waits while two are lent"
        );

        // The first buffer goes out as a body; once every copy of the body is gone
        // (the request written and dropped), the buffer is back and lent again.
        let Loan { mut buf, permit } = first;
        buf.extend_from_slice(b"sealed part");
        let body = pool.body(buf, permit);
        let copy = body.clone();
        drop(body);
        assert!(futures_util::poll!(third.as_mut()).is_pending());
        drop(copy);
        let again = third.await;
        assert_eq!(again.buf, b"sealed part", "the same buffer, reused");
        drop(second);
    }
}
