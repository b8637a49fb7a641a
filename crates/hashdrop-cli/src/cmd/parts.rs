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

/// Parts sent at the same time unless `--parallel` says otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

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
    // At most two parts are sealed at once (two cores); up to `parallel` are on the wire.
    let sealing = Arc::new(tokio::sync::Semaphore::new(2));
    let pool = BufferPool::default();
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
            let (file, enc, state, home, sealing, bar, pool) = (
                file.clone(),
                encryption.clone(),
                state.clone(),
                home.clone(),
                sealing.clone(),
                bar.clone(),
                pool.clone(),
            );
            async move {
                let index = u.part_number - 1;
                let permit = sealing.acquire_owned().await.expect("never closed");
                let buf = pool.take();
                let (sealed, digest) = tokio::task::spawn_blocking(move || {
                    seal_part(&file, &enc, &layout, index, buf)
                })
                .await??;
                drop(permit);
                record_digest(&state, &home, index, &digest)?;
                put_part(ctx, &u, pool.body(sealed)).await?;
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

/// Part buffers, reused. A fresh 8 MiB allocation per part makes the peak memory
/// grow with the number of parts sent (the allocator keeps freed buffers in the arena
/// of whichever thread freed them), not with how many parts are in flight.
#[derive(Clone, Default)]
struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// A buffer (contents and length unspecified).
    fn take(&self) -> Vec<u8> {
        self.0.lock().expect("pool").pop().unwrap_or_default()
    }

    /// `buf` as a request body that returns it here once sent (or dropped).
    fn body(&self, buf: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }
}

/// A buffer on loan from a [`BufferPool`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = self.pool.0.lock() {
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

/// PUTs one sealed part to its signed URL.
async fn put_part(ctx: &Ctx, url: &PartUrl, sealed: bytes::Bytes) -> anyhow::Result<()> {
    ctx.api.trace(&reqwest::Method::PUT, &url.url);
    // A part is sent again as it is: a dropped connection, a store that is briefly
    // failing (5xx) or rate limiting (429) should not end an upload of thousands of
    // parts. The body is shared, not copied, between attempts.
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        let sent = ctx
            .api
            .http()
            .put(&url.url)
            .header(CONTENT_LENGTH, sealed.len())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(sealed.clone())
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
