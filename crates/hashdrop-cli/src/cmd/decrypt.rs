//! `hashdrop decrypt LINK [DEST]`: download, decrypt into a temporary file next to the
//! destination, and rename it into place only once the whole stream authenticated
//! (and, with `--verify`, the keyed digest, or an older upload's SHA-256, matched).
//! Any failure leaves no output.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_util::TryStreamExt;
use hashdrop_client::HttpError;
use hashdrop_crypto::{decrypt_with, to_hex, AgeIdentity, Keys, Passphrase, PlainDigest};
use hashdrop_wire::{FileHash, KeyMode, ShareInfo};
use reqwest::Method;
use serde_json::json;
use url::Url;

use crate::api::{transport_error, Explain};
use crate::cli::DecryptArgs;
use crate::error::{fail, from_crypto};
use crate::pipe::{ChannelReader, ThreadedWriter};
use crate::secrets::{self, SecretKind};
use crate::util::{human_bytes, progress};
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

/// The download: a GET of the server-given (or linked) download URL, following its
/// redirect to the object, whose failure is explained as being about the shared file.
async fn download(ctx: &Ctx, url: &str, origin: &str) -> anyhow::Result<reqwest::Response> {
    ctx.api.trace(&Method::GET, url);
    let req = ctx
        .api
        .http()
        .get(url)
        .build()
        .map_err(|e| transport_error(e, origin))?;
    let resp = ctx
        .api
        .execute(req, true)
        .await
        .map_err(|e| transport_error(e, origin))?;
    if !resp.status().is_success() {
        return Err(HttpError::from_response(resp)
            .await
            .into_user("shared file"));
    }
    Ok(resp)
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
    let keys = keys_for(ctx, &args, &target, &info)?;
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
    if let Some(meta) = &info.metadata {
        let opened = {
            let (meta, keys) = (meta.clone(), keys.clone());
            tokio::task::spawn_blocking(move || sealed::open_for_recipient(&meta, &keys)).await?
        };
        let (meta, header) = opened.map_err(|e| from_crypto(e, "the shared file"))?;
        info.file_name = meta.name;
        header_match = Some(sealed::HeaderMatch::new(header));
    }
    let name = safe_name(&info.file_name, &target.file_id);
    let dest = destination(args.dest.as_deref(), &name, args.force)?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let url = target
        .download_url
        .clone()
        .unwrap_or_else(|| info.download_url.clone());
    let resp = download(ctx, &url, &target.origin).await?;
    let total = resp.content_length().unwrap_or(info.encrypted_size_bytes);
    let bar = progress(total, "downloading");
    let b = bar.clone();
    // The name was opened with a header the server handed out; the file must start
    // with that same header, or the name belongs to another file.
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
    let tmp = tempfile::Builder::new()
        .prefix(".hashdrop-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| {
            fail(
                "io",
                format!("cannot write in {} ({e})", dir.display()),
                "choose a writable destination",
            )
        })?;
    let out_file = tmp.as_file().try_clone()?;
    let tmp_path = tmp.path().to_path_buf();
    let work = tokio::task::spawn_blocking(move || {
        let mut out = ThreadedWriter::new(out_file);
        let result = decrypt_with(reader, &mut out, &keys, digest_kind);
        let finished = out.finish();
        let result = match (result, finished) {
            (Ok(s), Ok(())) => Ok(s),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        };
        (tmp, result)
    });
    // An interrupt would skip the temporary file's cleanup: remove it here, so not even
    // an authenticated prefix of the plaintext stays behind.
    let outcome = tokio::select! {
        done = work => done?,
        () = interrupted() => {
            let _ = std::fs::remove_file(&tmp_path);
            bar.finish_and_clear();
            eprintln!("hashdrop: error: interrupted; no output was written");
            std::process::exit(130);
        }
    };
    bar.finish_and_clear();
    let (tmp, result) = outcome;
    let summary = match result {
        Ok(s) => s,
        Err(hashdrop_crypto::CryptoError::Io(e)) => {
            drop(tmp);
            return Err(fail(
                "download_failed",
                format!("the download failed ({e}); no output was written"),
                "check the connection and retry",
            ));
        }
        Err(e) => {
            drop(tmp);
            return Err(from_crypto(e, "the downloaded file"));
        }
    };
    let name_belongs_here = header_check
        .lock()
        .expect("the download is over")
        .as_ref()
        .is_none_or(sealed::HeaderMatch::matched);
    if !name_belongs_here {
        drop(tmp);
        return Err(fail(
            "name_mismatch",
            "the server showed this file under the sealed name of another file; no output was written",
            "do not trust this server with the share: ask the sender to check it",
        ));
    }
    let actual = to_hex(&summary.plaintext_digest);
    let what = match digest_kind {
        PlainDigest::Keyed => "keyed digest",
        PlainDigest::Sha256 => "SHA-256",
    };
    if let Some(expected) = &expected {
        if expected != &actual {
            drop(tmp);
            return Err(fail(
                "hash_mismatch",
                format!("the decrypted file's {what} {actual} differs from the uploaded one {expected}; no output was written"),
                "the file on the server is not the one uploaded: ask the owner to upload it again",
            ));
        }
    }
    tmp.as_file().sync_all()?;
    let persisted = if args.force {
        tmp.persist(&dest).map(|_| ())
    } else {
        tmp.persist_noclobber(&dest).map(|_| ())
    };
    persisted.map_err(|e| {
        fail(
            "io",
            format!("cannot create {} ({})", dest.display(), e.error),
            "choose another destination",
        )
    })?;
    crate::home::sync_dir(&dir);
    let verified = expected.is_some();
    let mut report = json!({
        "file_id": target.file_id,
        "file_name": info.file_name,
        "path": dest,
        "plaintext_size_bytes": summary.plaintext_len,
        "verified": verified,
    });
    report[digest_field(digest_kind)] = json!(actual);
    ctx.emit(
        format!(
            "Decrypted {} ({}) to {}{}",
            info.file_name,
            human_bytes(summary.plaintext_len),
            dest.display(),
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
