//! `hashdrop decrypt LINK [DEST]`: download, decrypt into a hidden partial file next to
//! the destination, and rename it into place only once the whole stream authenticated
//! (and, with `--verify`, the keyed digest, or an older upload's SHA-256, matched).
//!
//! A download that stops on the transport (a cut connection, Ctrl-C, a killed process)
//! keeps its authenticated plaintext there (`crate::partial`); the same command run
//! again continues it with an HTTP Range from the last whole chunk, and then always
//! checks the whole plaintext's recorded digest. Bad data of any kind (a chunk that
//! fails authentication, a changed object, a digest that differs) removes the partial:
//! no plaintext stays behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::TryStreamExt;
use hashdrop_client::HttpError;
use hashdrop_crypto::{
    decrypt_resumed, decrypt_with, plaintext_len, to_hex, AgeIdentity, DecryptSummary, Keys,
    Passphrase, PlainDigest, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE,
};
use hashdrop_wire::{FileHash, KeyMode, ShareInfo};
use reqwest::{Method, StatusCode};
use serde_json::json;
use url::Url;

use crate::api::{transport_error, Explain};
use crate::cli::DecryptArgs;
use crate::error::{fail, from_crypto};
use crate::partial::{self, HeaderTee, Partial, State};
use crate::pipe::{ChannelReader, ThreadedWriter};
use crate::secrets::{self, SecretKind};
use crate::util::{human_bytes, printable, progress};
use crate::{sealed, vault_store, Ctx};

/// What a link points at.
#[derive(Debug)]
struct Target {
    origin: String,
    file_id: String,
    download_url: Option<String>,
    fragment_key: Option<String>,
}

fn parse_link(link: &str) -> anyhow::Result<Target> {
    let bad = || {
        fail(
            "bad_link",
            format!("{link:?} is not a Hashdrop share link or download URL"),
            "pass a link like https://HOST/d/FILE_ID#AGE-SECRET-KEY-1... or https://HOST/files/download/USER/FILE_ID",
        )
    };
    let url = Url::parse(link.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    let origin = url.origin().ascii_serialization();
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let fragment_key = url
        .fragment()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    let (file_id, download_url) = match segments.as_slice() {
        [.., "d", id] => (id.to_string(), None),
        [.., "files", "download", _user, id] => {
            let mut plain = url.clone();
            plain.set_fragment(None);
            (id.to_string(), Some(plain.to_string()))
        }
        _ => return Err(bad()),
    };
    if file_id.len() != 36 || !file_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(bad());
    }
    Ok(Target {
        origin,
        file_id: file_id.to_ascii_lowercase(),
        download_url,
        fragment_key,
    })
}

/// A safe file name from the display name: its last path component, no control
/// characters, never `.`/`..`/empty.
fn safe_name(name: &str, fallback: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().to_string();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        fallback.to_string()
    } else {
        cleaned
    }
}

fn default_dir() -> PathBuf {
    dirs::download_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join("Downloads")))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from("."))
}

fn destination(dest: Option<&Path>, name: &str, force: bool) -> anyhow::Result<PathBuf> {
    let path = match dest {
        None => default_dir().join(name),
        Some(d) if d.is_dir() => d.join(name),
        Some(d) => d.to_path_buf(),
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(fail(
            "no_dir",
            format!("the directory {} does not exist", parent.display()),
            "create it or choose another destination",
        ));
    }
    if path.exists() && !force {
        return Err(fail(
            "exists",
            format!("{} already exists", path.display()),
            "choose another destination or pass --force to replace it",
        ));
    }
    Ok(path)
}

/// The share facts, from the server the link names.
async fn share_info(ctx: &Ctx, t: &Target) -> anyhow::Result<ShareInfo> {
    let origin = Url::parse(&t.origin).context("the link's server")?;
    ctx.api
        .public_at(&origin, |c| c.share_info(&t.file_id))
        .await?
        .map_err(|e| e.into_user("shared file"))
}

fn keys_for(ctx: &Ctx, args: &DecryptArgs, t: &Target, info: &ShareInfo) -> anyhow::Result<Keys> {
    let parse = |s: &str| -> anyhow::Result<Keys> {
        let id: AgeIdentity = s.parse().map_err(|_| {
            fail(
                "invalid_key",
                "the key is not an age identity (AGE-SECRET-KEY-1...)",
                "copy the whole key, or the whole link including the part after '#'",
            )
        })?;
        Ok(Keys::identity(id))
    };
    let from_vault = || -> anyhow::Result<Keys> {
        let home = ctx.home();
        let pass = vault_store::passphrase(home)?;
        let vault = vault_store::open(home, &pass)?;
        Ok(vault.keys_for(&t.file_id))
    };
    let passphrase = || -> anyhow::Result<Keys> {
        Ok(Keys::passphrase(Passphrase::new(secrets::secret(
            SecretKind::Passphrase,
            false,
            1,
        )?)))
    };
    if let Some(k) = &args.key {
        return parse(k);
    }
    if let Some(path) = &args.key_file {
        return parse(&read_key_file(path)?);
    }
    if args.vault {
        return from_vault();
    }
    if args.passphrase {
        return passphrase();
    }
    // Named by the user, so it wins over the key a link carries.
    if let Some(k) = std::env::var("HASHDROP_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        return parse(k.trim());
    }
    if let Some(k) = &t.fragment_key {
        return parse(k);
    }
    match info.key_management_mode {
        KeyMode::Passphrase => passphrase(),
        KeyMode::Vault if vault_store::exists(ctx.home()) => from_vault(),
        KeyMode::Vault => Err(fail(
            "no_key",
            "the link carries no key (nothing after '#') and there is no local vault",
            "use the full share link, or pass --key IDENTITY",
        )),
    }
}

/// The identity in a key file (`-` = stdin): its first line that is not blank or an
/// age-style `#` comment.
fn read_key_file(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| {
        fail(
            "key_file",
            format!("cannot read the key file {} ({e})", path.display()),
            "check the path given to --key-file",
        )
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("")
        .to_string())
}

/// `hashdrop decrypt`.
pub async fn run(ctx: &Ctx, args: DecryptArgs) -> anyhow::Result<()> {
    let target = parse_link(&args.link)?;
    if let Ok(origin) = Url::parse(&target.origin) {
        ctx.api.check_transport(&origin, "the link")?;
    }
    let mut info = share_info(ctx, &target).await?;
    let mut keys = keys_for(ctx, &args, &target, &info)?;
    // New uploads record a keyed digest that whoever holds the key can check; older
    // ones a SHA-256 that only the owner may read back.
    let digest_kind = if info.keyed_digest.is_some() {
        PlainDigest::Keyed
    } else {
        PlainDigest::Sha256
    };
    let expected = match (&info.keyed_digest, args.verify) {
        (_, false) => None,
        (Some(keyed), true) => Some(keyed.to_ascii_lowercase()),
        (None, true) => Some(owner_recorded_sha256(ctx, &target.file_id).await?),
    };
    // A sealed name is opened with the file's key, before anything is downloaded: a
    // wrong key or passphrase fails here.
    let mut header_match = None;
    let mut name_header = None;
    if let Some(meta) = &info.metadata {
        let opened = {
            let (meta, keys) = (meta.clone(), keys.clone());
            tokio::task::spawn_blocking(move || sealed::open_for_recipient(&meta, &keys)).await?
        };
        let (meta, header, file_key) = opened.map_err(|e| from_crypto(e, "the shared file"))?;
        // The file is opened with the key its name was opened with: one scrypt for a
        // passphrase file, not two.
        keys = file_key;
        info.file_name = meta.name;
        name_header = Some(header.clone());
        header_match = Some(sealed::HeaderMatch::new(header));
    }
    let name = safe_name(&info.file_name, &target.file_id);
    let dest = destination(args.dest.as_deref(), &name, args.force)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let counted_url = target
        .download_url
        .clone()
        .unwrap_or_else(|| info.download_url.clone());
    let partial = Partial::new(&dir, &target.file_id);
    if args.restart && partial.exists() {
        partial.discard();
        ctx.note("Discarded the partial download kept from an earlier run.");
    }
    // Kept plaintext is not authenticated again when a download resumes: it is trusted
    // only because the whole plaintext's recorded digest is checked at the end, the
    // keyed digest (anyone with the key) or an older upload's SHA-256 (--verify, owner).
    let checkable = match digest_kind {
        PlainDigest::Keyed => info.keyed_digest.as_deref().map(str::to_ascii_lowercase),
        PlainDigest::Sha256 => expected.clone(),
    };
    let kept = kept_download(
        ctx,
        &partial,
        &target.file_id,
        &info,
        digest_kind,
        checkable.is_some(),
        name_header.as_deref(),
    )?;
    let source = match kept {
        Some(k) if k.chunk > 0 => {
            resume_source(ctx, &partial, k, &counted_url, &target.origin).await?
        }
        other => {
            let kept_url = other.as_ref().and_then(|k| k.state.live_object_url());
            Source::Whole(fetch(ctx, kept_url, &counted_url, None, &target.origin).await?)
        }
    };
    let (resp, kept) = match source {
        Source::Whole(resp) => (resp, None),
        Source::Rest { resp, kept } => (resp, Some(kept)),
    };

    let ciphertext_len = info.encrypted_size_bytes;
    let bar = progress(ciphertext_len, "downloading");
    let resumed_at = kept.as_ref().map_or(0, |k| k.chunk * CHUNK_SIZE as u64);
    if let Some(k) = &kept {
        bar.set_position(k.offset());
        ctx.note(format!(
            "Resuming at {} of {} (kept from an interrupted download)",
            human_bytes(resumed_at),
            human_bytes(k.plaintext_len),
        ));
    }
    let object_url = resp.url().to_string();
    let b = bar.clone();
    // The name was opened with a header the server handed out; the file must start
    // with that same header, or the name belongs to another file. (A resumed download
    // checked the object's first bytes against the kept header, and that header
    // against the name's, before it asked for the rest.)
    let header_match = if kept.is_none() { header_match } else { None };
    let header_check = std::sync::Arc::new(std::sync::Mutex::new(header_match));
    let checking = std::sync::Arc::clone(&header_check);
    let stream = resp
        .bytes_stream()
        .inspect_ok(move |c| {
            b.inc(c.len() as u64);
            if let Some(m) = checking.lock().expect("one user at a time").as_mut() {
                m.feed(c);
            }
        })
        .map_err(std::io::Error::other);
    let reader = ChannelReader::spawn(stream);
    let cannot_write = |e: std::io::Error| {
        fail(
            "io",
            format!("cannot write in {} ({e})", dir.display()),
            "choose a writable destination",
        )
    };
    let work = match kept.as_ref() {
        None => {
            let out = partial.start_over().map_err(cannot_write)?;
            let (p, id) = (partial.clone(), target.file_id.clone());
            let name_header = name_header.clone();
            // Runs once the header has gone by, before any plaintext can: from then on
            // the partial can be resumed. Not for a header other than the sealed name's:
            // that download fails at its end, and nothing of it is kept.
            let on_header = move |header: &[u8]| {
                if name_header.is_some_and(|h| h != header) {
                    return;
                }
                let state = State::new(&id, ciphertext_len, header, digest_kind, &object_url);
                // Without a state the partial is simply not resumable.
                let _ = p.write_state(&state);
            };
            tokio::task::spawn_blocking(move || {
                let input = HeaderTee::new(reader, on_header);
                let mut out = ThreadedWriter::new(out);
                let result = decrypt_with(input, &mut out, &keys, digest_kind);
                finish_writing(result, out)
            })
        }
        Some(k) => {
            let (out, prefix) = partial.continue_at(k.chunk).map_err(cannot_write)?;
            let (header, chunk) = (k.header.clone(), k.chunk);
            tokio::task::spawn_blocking(move || {
                let mut out = ThreadedWriter::new(out);
                let result =
                    decrypt_resumed(&header, chunk, prefix, reader, &mut out, &keys, digest_kind);
                finish_writing(result, out)
            })
        }
    };
    // What stays when the download stops short: the authenticated plaintext so far, if
    // it can be resumed (its state is written and its digest can be checked).
    let keepable = || checkable.is_some() && partial.read_state().is_some();
    let kept_note = || {
        format!(
            "kept the authenticated part ({}) in {}",
            human_bytes(partial.len()),
            partial.data.display()
        )
    };
    // An interrupt skips every destructor: decide here what stays.
    let result = tokio::select! {
        done = work => done?,
        () = interrupted() => {
            bar.finish_and_clear();
            let line = if keepable() {
                format!(
                    "interrupted; {}: run the same command again to resume, or pass --restart (or delete that file) to start over",
                    kept_note()
                )
            } else {
                partial.discard();
                "interrupted; no output was written".to_string()
            };
            eprintln!("hashdrop: error: {}", printable(&line, false));
            std::process::exit(130);
        }
    };
    bar.finish_and_clear();
    let summary = match result {
        Ok(s) => s,
        Err(hashdrop_crypto::CryptoError::Io(e)) if keepable() => {
            return Err(fail(
                "download_failed",
                format!("the download failed ({e}); {}", kept_note()),
                "run the same command again to resume (--restart starts over)",
            ));
        }
        Err(hashdrop_crypto::CryptoError::Io(e)) => {
            partial.discard();
            return Err(fail(
                "download_failed",
                format!("the download failed ({e}); no output was written"),
                "check the connection and retry",
            ));
        }
        Err(e) => {
            partial.discard();
            // Opened with its name's file key, another file's header fails its MAC:
            // say what happened rather than "damaged".
            let other_header = header_check
                .lock()
                .expect("the download is over")
                .as_ref()
                .is_some_and(sealed::HeaderMatch::differs);
            if other_header {
                return Err(name_mismatch());
            }
            return Err(from_crypto(e, "the downloaded file"));
        }
    };
    let name_belongs_here = header_check
        .lock()
        .expect("the download is over")
        .as_ref()
        .is_none_or(sealed::HeaderMatch::matched);
    if !name_belongs_here {
        partial.discard();
        return Err(name_mismatch());
    }
    let actual = to_hex(&summary.plaintext_digest);
    let what = match digest_kind {
        PlainDigest::Keyed => "keyed digest",
        PlainDigest::Sha256 => "SHA-256",
    };
    // A resumed download is always checked: nothing else vouches for the kept part.
    let compared = if kept.is_some() { checkable } else { expected };
    if let Some(expected) = &compared {
        if expected != &actual {
            partial.discard();
            return Err(if kept.is_some() {
                fail(
                    "hash_mismatch",
                    format!("the resumed file's {what} {actual} differs from the uploaded one {expected}: the part kept from the interrupted download was changed on disk, or the file on the server is not the one uploaded; no output was written and the partial download was removed"),
                    "run the same command again to download it from the start",
                )
            } else {
                fail(
                    "hash_mismatch",
                    format!("the decrypted file's {what} {actual} differs from the uploaded one {expected}; no output was written"),
                    "the file on the server is not the one uploaded: ask the owner to upload it again",
                )
            });
        }
    }
    move_into_place(&partial, &dest, args.force)?;
    crate::home::sync_dir(&dir);
    let verified = compared.is_some();
    let mut report = json!({
        "file_id": target.file_id,
        "file_name": info.file_name,
        "path": dest,
        "plaintext_size_bytes": summary.plaintext_len,
        "verified": verified,
        "resumed_at_bytes": resumed_at,
    });
    report[digest_field(digest_kind)] = json!(actual);
    ctx.emit(
        format!(
            "Decrypted {} ({}) to {}{}{}",
            info.file_name,
            human_bytes(summary.plaintext_len),
            dest.display(),
            if kept.is_some() {
                format!(", resumed at {}", human_bytes(resumed_at))
            } else {
                String::new()
            },
            if verified {
                format!(", {what} verified")
            } else {
                String::new()
            }
        ),
        report,
    );
    Ok(())
}

/// The decryption's outcome once the writer thread has written (or failed to write)
/// everything.
fn finish_writing(
    result: hashdrop_crypto::Result<DecryptSummary>,
    out: ThreadedWriter,
) -> hashdrop_crypto::Result<DecryptSummary> {
    let finished = out.finish();
    match (result, finished) {
        (Ok(s), Ok(())) => Ok(s),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

/// Renames the complete, checked plaintext to `dest` (replacing a file there only with
/// `--force`) and forgets the partial's state.
fn move_into_place(partial: &Partial, dest: &Path, force: bool) -> anyhow::Result<()> {
    std::fs::File::open(&partial.data)?.sync_all()?;
    let data = tempfile::TempPath::try_from_path(&partial.data)?;
    let persisted = if force {
        data.persist(dest)
    } else {
        data.persist_noclobber(dest)
    };
    // On failure the plaintext is removed (dropping the returned path), then the state.
    let persisted = persisted.map_err(|e| e.error);
    partial.finished();
    persisted.map_err(|e| {
        fail(
            "io",
            format!("cannot create {} ({e})", dest.display()),
            "choose another destination",
        )
    })
}

/// A partial download found next to the destination, matching the shared file.
#[derive(Debug)]
struct Kept {
    state: State,
    header: Vec<u8>,
    /// The STREAM chunk to continue at (0: nothing worth keeping).
    chunk: u64,
    plaintext_len: u64,
}

impl Kept {
    /// The ciphertext byte the resumed download starts at.
    fn offset(&self) -> u64 {
        self.header.len() as u64 + self.chunk * ENCRYPTED_CHUNK_SIZE as u64
    }
}

/// Where the ciphertext comes from.
enum Source {
    /// The whole object, from its first byte.
    Whole(reqwest::Response),
    /// The object from the kept download's resume point on.
    Rest { resp: reqwest::Response, kept: Kept },
}

/// The partial download of this file kept next to the destination, if it can be
/// continued. One that cannot (no state: killed before the header went by; or its
/// digest cannot be checked) is removed and the download starts over; one whose file
/// changed on the server is removed with an error.
fn kept_download(
    ctx: &Ctx,
    partial: &Partial,
    file_id: &str,
    info: &ShareInfo,
    digest_kind: PlainDigest,
    checkable: bool,
    name_header: Option<&[u8]>,
) -> anyhow::Result<Option<Kept>> {
    if !partial.exists() {
        return Ok(None);
    }
    let Some(state) = partial.read_state() else {
        partial.discard();
        return Ok(None);
    };
    let header = state.header();
    let plaintext_len = header.as_ref().and_then(|h| {
        info.encrypted_size_bytes
            .checked_sub(h.len() as u64)
            .and_then(plaintext_len)
    });
    let same = state.file_id == file_id
        && state.ciphertext_len == info.encrypted_size_bytes
        && state.digest == partial::digest_name(digest_kind)
        && name_header.is_none_or(|h| header.as_deref() == Some(h));
    let (Some(header), Some(plaintext_len), true) = (header, plaintext_len, same) else {
        partial.discard();
        return Err(changed());
    };
    if !checkable {
        partial.discard();
        ctx.note(
            "Starting over: a download of a file uploaded before keyed digests resumes only \
             with --verify, by its owner.",
        );
        return Ok(None);
    }
    Ok(Some(Kept {
        chunk: partial.resume_point(plaintext_len),
        state,
        header,
        plaintext_len,
    }))
}

/// The kept partial download no longer matches the shared file.
fn changed() -> anyhow::Error {
    fail(
        "changed",
        "the shared file is not the one the interrupted download started on (its size or header changed); the partial download was removed",
        "run the same command again to download it from the start",
    )
}

/// Asks for the rest of the object after the kept chunks: first its header, which must
/// still be the kept one, then everything from the resume point (`Range: bytes=N-`),
/// through the object URL kept from the first run while it is valid, else through a
/// new counted download. A server that answers with the whole object (200) gets that
/// download used from the start.
async fn resume_source(
    ctx: &Ctx,
    partial: &Partial,
    mut kept: Kept,
    counted_url: &str,
    origin: &str,
) -> anyhow::Result<Source> {
    let total = kept.state.ciphertext_len;
    let header_len = kept.header.len() as u64;
    let head = fetch(
        ctx,
        kept.state.live_object_url(),
        counted_url,
        Some(format!("bytes=0-{}", header_len - 1)),
        origin,
    )
    .await?;
    let object_url = head.url().to_string();
    match head.status() {
        StatusCode::PARTIAL_CONTENT => {
            if content_range(&head) != Some((0, header_len - 1, total)) {
                partial.discard();
                return Err(changed());
            }
            let first = head.bytes().await.map_err(|e| transport_error(e, origin))?;
            if first[..] != kept.header[..] {
                partial.discard();
                return Err(changed());
            }
        }
        StatusCode::OK => {
            ctx.note("The server ignores byte ranges: downloading from the start.");
            return Ok(Source::Whole(head));
        }
        _ => return Err(refused(head).await),
    }
    if kept.state.live_object_url() != Some(object_url.as_str()) {
        kept.state.set_object_url(&object_url);
        // Only saves a counted download next time.
        let _ = partial.write_state(&kept.state);
    }
    let offset = kept.offset();
    let rest = get(ctx, &object_url, Some(format!("bytes={offset}-")), origin).await?;
    match rest.status() {
        StatusCode::PARTIAL_CONTENT if content_range(&rest) == Some((offset, total - 1, total)) => {
            Ok(Source::Rest { resp: rest, kept })
        }
        StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
            partial.discard();
            Err(changed())
        }
        StatusCode::OK => {
            ctx.note("The server ignores byte ranges: downloading from the start.");
            Ok(Source::Whole(rest))
        }
        _ => Err(refused(rest).await),
    }
}

/// `Content-Range: bytes FIRST-LAST/TOTAL`.
fn content_range(resp: &reqwest::Response) -> Option<(u64, u64, u64)> {
    let value = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
}

/// A successful GET through `kept_url` (an object URL kept from an earlier run) when
/// it still works, else through the counted download URL.
async fn fetch(
    ctx: &Ctx,
    kept_url: Option<&str>,
    counted_url: &str,
    range: Option<String>,
    origin: &str,
) -> anyhow::Result<reqwest::Response> {
    let usable = kept_url.filter(|u| {
        Url::parse(u).is_ok_and(|u| ctx.api.check_transport(&u, "the kept download URL").is_ok())
    });
    if let Some(url) = usable {
        if let Ok(resp) = get(ctx, url, range.clone(), origin).await {
            if resp.status().is_success() {
                return Ok(resp);
            }
        }
        // Expired or refused: a counted download hands out a fresh one.
    }
    let resp = get(ctx, counted_url, range, origin).await?;
    if !resp.status().is_success() {
        return Err(refused(resp).await);
    }
    Ok(resp)
}

/// A GET of `url` with an optional `Range`, following redirects (the counted download
/// redirects to the object), whatever the status.
async fn get(
    ctx: &Ctx,
    url: &str,
    range: Option<String>,
    origin: &str,
) -> anyhow::Result<reqwest::Response> {
    ctx.api.trace(&Method::GET, url);
    let mut req = ctx.api.http().get(url);
    if let Some(range) = range {
        req = req.header(reqwest::header::RANGE, range);
    }
    let req = req.build().map_err(|e| transport_error(e, origin))?;
    ctx.api
        .execute(req, true)
        .await
        .map_err(|e| transport_error(e, origin))
}

/// A refused download, explained as being about the shared file.
async fn refused(resp: reqwest::Response) -> anyhow::Error {
    HttpError::from_response(resp)
        .await
        .into_user("shared file")
}

/// The JSON field a digest of this kind is reported in, as upload and the API name it.
fn digest_field(kind: PlainDigest) -> &'static str {
    match kind {
        PlainDigest::Keyed => "keyed_digest",
        PlainDigest::Sha256 => "plaintext_hash",
    }
}

/// The SHA-256 an older upload recorded, which only its owner may read back.
async fn owner_recorded_sha256(ctx: &Ctx, file_id: &str) -> anyhow::Result<String> {
    if ctx.api.session().is_err() {
        return Err(fail(
            "verify_needs_login",
            "--verify on a file uploaded before keyed digests compares with the SHA-256 its upload recorded, which needs the owner's login",
            "log in as the owner (`hashdrop auth login`) or drop --verify",
        ));
    }
    let h: FileHash = ctx
        .api
        .authed(|c| c.file_hash(file_id))
        .await?
        .map_err(|e| e.into_user("file hash"))?;
    Ok(h.hash.to_ascii_lowercase())
}

/// Resolves on Ctrl-C (and SIGTERM on Unix); never, if the handlers cannot be set up.
async fn interrupted() {
    async fn ctrl_c() {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c().await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// The server showed a file under the sealed name of another.
fn name_mismatch() -> anyhow::Error {
    fail(
        "name_mismatch",
        "the server showed this file under the sealed name of another file; no output was written",
        "do not trust this server with the share: ask the sender to check it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01";

    #[test]
    fn share_links_and_download_urls_parse() {
        let t = parse_link(&format!("http://h:1/d/{ID}#AGE-SECRET-KEY-1ABC")).unwrap();
        assert_eq!(t.origin, "http://h:1");
        assert_eq!(t.file_id, ID);
        assert_eq!(t.fragment_key.as_deref(), Some("AGE-SECRET-KEY-1ABC"));
        assert!(t.download_url.is_none());
        let t = parse_link(&format!("https://x.example/files/download/usrh-ab/{ID}")).unwrap();
        assert_eq!(t.file_id, ID);
        assert_eq!(
            t.download_url.as_deref(),
            Some(format!("https://x.example/files/download/usrh-ab/{ID}").as_str())
        );
        assert!(parse_link("http://h/other/path").is_err());
        assert!(parse_link("not a url").is_err());
        assert!(parse_link("http://h/d/../../etc").is_err());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        assert_eq!(safe_name("../../etc/passwd", "id"), "passwd");
        assert_eq!(safe_name("..", "id"), "id");
        assert_eq!(safe_name("a\nb.txt", "id"), "ab.txt");
        assert_eq!(safe_name("C:\\x\\y.doc", "id"), "y.doc");
    }
}
