//! `hashdrop upload`: size check, then one read of the file that digests and encrypts
//! while uploading, complete (which carries the keyed digest), vault. The name goes
//! to the server sealed (`crate::sealed`), never in clear.

use std::path::Path;

use futures_util::TryStreamExt;
use hashdrop_client::HttpError;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hashdrop_crypto::{
    to_hex, AgeIdentity, AgeRecipient, Encryption, Keys, Passphrase, Recipients,
};
use hashdrop_wire::{
    CompleteRequest, CompleteResponse, FileMetadata, KeyMode, PresignRequest, PresignResponse,
};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::json;

use crate::api::{transport_error, Explain};
use crate::error::{fail, from_crypto};
use crate::secrets::{self, SecretKind};
use crate::util::{human_bytes, progress, rfc3339_after};
use crate::{vault_store, Ctx};

use super::parts;

/// Default client-side cap on the ciphertext size (the server's default per-file
/// limit: a 2 GiB file once encrypted); `HASHDROP_MAX_UPLOAD_BYTES` overrides it.
pub const DEFAULT_MAX_UPLOAD: u64 = hashdrop_wire::DEFAULT_FILE_MAX_BYTES;

fn max_upload() -> u64 {
    std::env::var("HASHDROP_MAX_UPLOAD_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_UPLOAD)
}

/// Minimum length of a file passphrase.
pub const MIN_PASSPHRASE: usize = 8;

enum KeyPlan {
    Vault {
        pass: Passphrase,
        file_key: AgeIdentity,
        account: hashdrop_crypto::AgeRecipient,
    },
    Passphrase(Passphrase),
}

/// The secret an upload is encrypted under: the vault's passphrase (the file gets a
/// fresh key, kept in the vault) or the file's own passphrase.
enum Secret {
    Vault(Passphrase),
    File(Passphrase),
}

/// `hashdrop upload PATH`.
pub async fn run(ctx: &Ctx, args: crate::cli::UploadArgs) -> anyhow::Result<()> {
    let path = args.path.as_path();
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(
            "no_file",
            format!("cannot read {} ({e})", path.display()),
            "check the path",
        )
    })?;
    if !meta.is_file() {
        return Err(fail(
            "not_a_file",
            format!("{} is not a regular file", path.display()),
            "upload one file at a time (archive a directory first)",
        ));
    }
    let size = meta.len();
    let name = match &args.name {
        Some(n) => n.trim().to_string(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into()),
    };
    if name.is_empty() {
        return Err(fail(
            "bad_name",
            "the display name is empty",
            "pass --name NAME",
        ));
    }
    // Fail before any expensive work when not logged in.
    ctx.api.session()?;
    let expires_at = match args.expires {
        Some(d) => Some(rfc3339_after(*d)?),
        None => None,
    };

    let limit = max_upload();
    // The age header adds a few hundred bytes to the payload; check the payload now and
    // the exact size once the header exists.
    if hashdrop_crypto::payload_len(size) > limit {
        return Err(too_large(path, hashdrop_crypto::payload_len(size), limit));
    }

    // Secrets first (prompts must not race a progress bar).
    let home = ctx.home().clone();
    let secret = if args.no_vault {
        Secret::File(Passphrase::new(secrets::secret(
            SecretKind::Passphrase,
            true,
            MIN_PASSPHRASE,
        )?))
    } else {
        Secret::Vault(vault_store::passphrase(&home)?)
    };

    // A large file goes in parts, and an interrupted upload of it continues.
    let multipart = size > parts::MULTIPART_ABOVE;
    let canonical = parts::canonical(path);
    let modified = parts::modified_ns(&meta);
    if multipart {
        if let Some(state) = parts::UploadState::load(&home, &ctx.api.base(), &canonical) {
            if let Some(done) = resume(ctx, &args, &secret, state, size, modified).await? {
                return finish(ctx, done).await;
            }
        }
    }

    let prepared = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        let plan = match secret {
            Secret::File(p) => KeyPlan::Passphrase(p),
            Secret::Vault(pass) => {
                let (vault, created) = vault_store::open_or_create(&home, &pass)?;
                if created {
                    ctx.note(format!(
                        "Created a new vault in {}. Keep the vault passphrase safe: without it \
                         the keys of your vault-mode files cannot be recovered.",
                        home.dir().display()
                    ));
                }
                KeyPlan::Vault {
                    pass,
                    file_key: AgeIdentity::generate(),
                    account: vault.account().to_recipient(),
                }
            }
        };
        let encryption = match &plan {
            KeyPlan::Vault {
                file_key, account, ..
            } => Encryption::new(Recipients::Vault {
                file: &file_key.to_recipient(),
                account,
            }),
            KeyPlan::Passphrase(p) => Encryption::new(Recipients::Passphrase {
                passphrase: p,
                work_factor: Some(vault_store::passphrase_file_work_factor()),
            }),
        }
        .map_err(|e| from_crypto(e, "the file"))?
        .expect_plaintext_len(size);
        Ok((plan, encryption))
    });
    let (plan, encryption) = prepared?;
    let ciphertext_len = encryption.ciphertext_len(size);
    if ciphertext_len > limit {
        return Err(too_large(path, ciphertext_len, limit));
    }

    // The owner's copy of the name goes to the account key: the vault's, or for a
    // passphrase file the one the vault's public metadata names (no unlock needed).
    let owner = match &plan {
        KeyPlan::Vault { account, .. } => Some(account.clone()),
        KeyPlan::Passphrase(_) => home
            .vault_meta()?
            .and_then(|m| m.account_recipient.parse().ok()),
    };
    if owner.is_none() {
        ctx.note(
            "There is no vault on this machine, so `hashdrop files list` will not be able to \
             show this file's name; its recipients (with the passphrase) still see it.",
        );
    }
    let metadata = crate::sealed::seal(
        &encryption,
        owner.as_ref(),
        &FileMetadata {
            name: name.clone(),
            media_type: None,
        },
    )?;
    let layout = encryption
        .part_layout(size, parts::PART_SIZE)
        .map_err(|e| from_crypto(e, "the file"))?;

    // The file is read once: the digest comes out of the same pass that encrypts into
    // the upload, so the slot is asked for without it and complete carries it.
    let presign = PresignRequest {
        file_name: String::new(),
        metadata: Some(metadata),
        plaintext_hash: None,
        keyed_digest: None,
        encrypted_size_bytes: ciphertext_len,
        key_management_mode: match plan {
            KeyPlan::Vault { .. } => KeyMode::Vault,
            KeyPlan::Passphrase(_) => KeyMode::Passphrase,
        },
        mime_type: None,
        expires_at,
        max_downloads: args.max_downloads,
        parts: multipart.then(|| parts::plan(&layout)),
    };
    let slot: PresignResponse = ctx
        .api
        .authed(|c| c.presign(&presign))
        .await?
        .map_err(|e| e.into_user("upload slot"))?;
    let file_id = slot.file_id.clone();

    let mut upload = Upload {
        file_id: file_id.clone(),
        name,
        size,
        plan,
        keyed_digest: [0; 32],
        resumed: None,
        state: None,
    };
    if multipart {
        let sealed_link_key = match &upload.plan {
            KeyPlan::Vault {
                file_key, account, ..
            } => Some(seal_link_key(file_key, account)?),
            KeyPlan::Passphrase(_) => None,
        };
        let state = parts::UploadState {
            version: parts::STATE_VERSION,
            server: ctx.api.base(),
            path: canonical,
            size,
            modified_ns: modified,
            key_mode: presign.key_management_mode.as_str().to_string(),
            file_id: file_id.clone(),
            name: upload.name.clone(),
            part_size: parts::PART_SIZE,
            header: b64(encryption.header()),
            sealed_link_key,
            part_digests: Default::default(),
        };
        state.save(&home)?;
        let state = Arc::new(Mutex::new(state));
        let sent = parts::send(
            ctx,
            path,
            Arc::new(encryption),
            layout,
            state.clone(),
            &[],
            args.parallel,
        )
        .await
        .map_err(|e| explain_changed(e, path))?;
        upload.keyed_digest = sent.keyed_digest;
        upload.state = Some(state);
    } else {
        upload.keyed_digest = match put_object(ctx, path, &slot, encryption, ciphertext_len).await {
            Ok(digest) => digest,
            Err(e) => {
                // Release the reserved quota now rather than waiting for the server's sweeper.
                let _ = ctx.api.authed(|c| c.delete_file(&file_id)).await;
                return Err(e);
            }
        };
    }
    finish(ctx, upload).await
}

/// An upload whose bytes are all on the server, to be completed.
struct Upload {
    file_id: String,
    name: String,
    size: u64,
    plan: KeyPlan,
    keyed_digest: [u8; 32],
    /// Ciphertext bytes a resumed upload found on the server.
    resumed: Option<parts::Sent>,
    /// A multipart upload's saved state, removed once the upload is complete.
    state: Option<Arc<Mutex<parts::UploadState>>>,
}

/// Continues the interrupted multipart upload `state` describes, if it still can:
/// `None` when it must start over (the file changed, the server dropped the upload,
/// `--restart`), after saying why and cleaning up.
async fn resume(
    ctx: &Ctx,
    args: &crate::cli::UploadArgs,
    secret: &Secret,
    state: parts::UploadState,
    size: u64,
    modified: u128,
) -> anyhow::Result<Option<Upload>> {
    let home = ctx.home().clone();
    let mode_now = match secret {
        Secret::Vault(_) => "vault",
        Secret::File(_) => "passphrase",
    };
    let abandon = |why: &str| {
        if !why.is_empty() {
            ctx.note(format!(
                "Not resuming the interrupted upload of {}: {why}; starting over.",
                state.path.display()
            ));
        }
        let id = state.file_id.clone();
        state.remove(&home);
        async move {
            let _ = ctx.api.authed(|c| c.delete_file(&id)).await;
            anyhow::Ok(None)
        }
    };
    if args.restart {
        return abandon("--restart").await;
    }
    if !state.matches_file(size, modified) {
        return abandon("the file changed since (size or modification time)").await;
    }
    if state.key_mode != mode_now {
        return abandon("it was encrypted in the other key mode").await;
    }
    // `None`: the server completed the upload already (its answer was lost, or the
    // run was stopped before it saved the key): every part is there, only the
    // finishing steps remain.
    let held = match ctx.api.authed(|c| c.stored_parts(&state.file_id)).await? {
        Ok(held) => Some(held),
        Err(e) if e.status.as_u16() == 409 && is_uploaded(ctx, &state.file_id).await => None,
        Err(e) if matches!(e.status.as_u16(), 404 | 409) => {
            return abandon("the server no longer holds it (deleted, expired or swept)").await;
        }
        Err(e) => return Err(e.into_user("upload")),
    };
    let header = state.header_bytes()?;
    let reopened = tokio::task::block_in_place(|| -> anyhow::Result<_> {
        match secret {
            Secret::Vault(pass) => {
                let vault = vault_store::open(&home, pass)?;
                let account = Keys::identity(vault.account().clone());
                let encryption = Encryption::reopen(&header, &account)
                    .map_err(|e| from_crypto(e, "the interrupted upload"))?;
                let sealed = state
                    .sealed_link_key
                    .as_deref()
                    .context("the saved upload state has no link key")?;
                let file_key = open_link_key(sealed, &account)?;
                Ok((
                    encryption,
                    KeyPlan::Vault {
                        pass: pass.clone(),
                        file_key,
                        account: vault.account().to_recipient(),
                    },
                ))
            }
            Secret::File(pass) => {
                let encryption = Encryption::reopen(&header, &Keys::passphrase(pass.clone()))
                    .map_err(|_| {
                        fail(
                            "wrong_passphrase",
                            "this passphrase does not open the interrupted upload",
                            "give the passphrase the upload started with, or pass --restart",
                        )
                    })?;
                Ok((encryption, KeyPlan::Passphrase(pass.clone())))
            }
        }
    })?;
    let (encryption, plan) = reopened;
    let layout = encryption
        .part_layout(size, state.part_size)
        .map_err(|e| from_crypto(e, "the file"))?;
    let held_numbers: Vec<u64> = match held {
        None => (1..=layout.part_count()).collect(),
        Some(held) if held.part_count != layout.part_count() => {
            return abandon("the server describes it differently").await;
        }
        Some(held) => held
            .parts
            .iter()
            .filter(|p| (1..=layout.part_count()).contains(&p.part_number))
            .filter(|p| {
                let c = layout.ciphertext_range(p.part_number - 1);
                p.size_bytes == c.end - c.start
            })
            .map(|p| p.part_number)
            .collect(),
    };
    let path = state.path.clone();
    let (file_id, name) = (state.file_id.clone(), state.name.clone());
    let state = Arc::new(Mutex::new(state));
    let sent = parts::send(
        ctx,
        &path,
        Arc::new(encryption),
        layout,
        state.clone(),
        &held_numbers,
        args.parallel,
    )
    .await;
    let sent = match sent {
        Ok(s) => s,
        Err(e) if e.downcast_ref::<parts::FileChanged>().is_some() => {
            let s = state.lock().expect("state").clone();
            let id = s.file_id.clone();
            s.remove(&home);
            let _ = ctx.api.authed(|c| c.delete_file(&id)).await;
            ctx.note(format!(
                "Not resuming the interrupted upload of {}: {e}; starting over with a new key.",
                path.display()
            ));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    ctx.note(format!(
        "Resumed the upload of {} at {} ({} of {} parts were on the server).",
        path.display(),
        human_bytes(sent.reused_bytes),
        sent.parts_reused,
        sent.parts_reused + sent.parts_sent
    ));
    Ok(Some(Upload {
        file_id,
        name,
        size,
        plan,
        keyed_digest: sent.keyed_digest,
        resumed: Some(sent),
        state: Some(state),
    }))
}

/// Whether the owner's file `file_id` is `uploaded` (completed).
async fn is_uploaded(ctx: &Ctx, file_id: &str) -> bool {
    matches!(
        ctx.api.authed(|c| c.details(file_id)).await,
        Ok(Ok(found)) if found.iter().any(|d| d.file_id == file_id && d.status == "uploaded")
    )
}

/// The file changed while its first run read it: say so plainly.
fn explain_changed(e: anyhow::Error, path: &Path) -> anyhow::Error {
    if e.downcast_ref::<parts::FileChanged>().is_some() {
        fail(
            "file_changed",
            format!(
                "{} changed while it was being uploaded ({e})",
                path.display()
            ),
            "upload it again once nothing is writing to it",
        )
    } else {
        e
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The link key as an age file to the account key, for the resume state.
fn seal_link_key(file_key: &AgeIdentity, account: &AgeRecipient) -> anyhow::Result<String> {
    let secret = file_key.to_secret_string();
    let text = hashdrop_crypto::secrecy::ExposeSecret::expose_secret(&secret);
    let mut sealed = Vec::new();
    hashdrop_crypto::encrypt(text.as_bytes(), &mut sealed, Recipients::Account(account))
        .map_err(|e| from_crypto(e, "the upload state"))?;
    Ok(b64(&sealed))
}

/// The link key back from the resume state.
fn open_link_key(sealed: &str, account: &Keys) -> anyhow::Result<AgeIdentity> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .context("the saved upload state is damaged (link key)")?;
    let mut text = Vec::new();
    hashdrop_crypto::decrypt(&bytes[..], &mut text, account)
        .map_err(|e| from_crypto(e, "the upload state"))?;
    let key = String::from_utf8(text).context("the saved link key is not text")?;
    key.parse()
        .map_err(|_| anyhow::anyhow!("the saved upload state is damaged (link key)"))
}

/// Completes an upload whose bytes are all stored, records the key in the vault and
/// reports the link.
async fn finish(ctx: &Ctx, upload: Upload) -> anyhow::Result<()> {
    let Upload {
        file_id,
        name,
        size,
        plan,
        keyed_digest,
        resumed,
        state,
    } = upload;
    let complete = CompleteRequest {
        file_id: file_id.clone(),
        plaintext_hash: None,
        keyed_digest: Some(to_hex(&keyed_digest)),
        plaintext_size_bytes: Some(size),
        passphrase_salt: None,
    };
    let done: CompleteResponse = ctx
        .api
        .authed(|c| c.complete(&complete))
        .await?
        .map_err(|e| e.into_user("upload"))?;

    let link = match &plan {
        KeyPlan::Vault { pass, file_key, .. } => {
            let home = ctx.home().clone();
            let key = file_key.clone();
            let id = file_id.clone();
            let saved = vault_store::update(&home, pass, move |v| match v.file(&id) {
                // A resumed upload whose first run got this far already saved it.
                Some(known)
                    if known.to_recipient().to_string() == key.to_recipient().to_string() =>
                {
                    Ok(())
                }
                _ => v.insert(&id, key).map_err(|_| {
                    fail(
                        "vault_conflict",
                        format!("the vault already holds a different key for {id}"),
                        "report a bug",
                    )
                }),
            });
            let secret = file_key.to_secret_string();
            let key_text = hashdrop_crypto::secrecy::ExposeSecret::expose_secret(&secret);
            if let Err(e) = saved {
                // The file is uploaded but its key did not reach the vault: this line is
                // the only copy left, so it must not be swallowed.
                eprintln!(
                    "hashdrop: warning: the key of {file_id} could not be saved to the vault; \
                     keep this share link, it is the only copy of the key: {}/d/{file_id}#{key_text}",
                    ctx.api.base()
                );
                return Err(e);
            }
            format!("{}/d/{file_id}#{key_text}", ctx.api.base())
        }
        KeyPlan::Passphrase(_) => format!("{}/d/{file_id}", ctx.api.base()),
    };
    if let Some(state) = state {
        state.lock().expect("state").remove(ctx.home());
    }
    let mode = match plan {
        KeyPlan::Vault { .. } => "vault",
        KeyPlan::Passphrase(_) => "passphrase",
    };
    let mut report = json!({
        "file_id": file_id,
        "file_name": name,
        "plaintext_size_bytes": size,
        "encrypted_size_bytes": done.uploaded_file_size,
        "key_management_mode": mode,
        "keyed_digest": to_hex(&keyed_digest),
        "share_link": link,
    });
    if let Some(r) = resumed {
        report["resumed_at_bytes"] = json!(r.reused_bytes);
        report["parts_sent"] = json!(r.parts_sent);
        report["parts_reused"] = json!(r.parts_reused);
    }
    ctx.emit(
        format!(
            "Uploaded {name} ({}, {mode} mode)\nFile id:    {file_id}\nShare link: {link}",
            human_bytes(size)
        ),
        report,
    );
    Ok(())
}

fn too_large(path: &Path, len: u64, limit: u64) -> anyhow::Error {
    fail(
        "too_large",
        format!(
            "{} is too large: {} encrypted, the limit is {}",
            path.display(),
            human_bytes(len),
            human_bytes(limit)
        ),
        "upload a smaller file (or raise HASHDROP_MAX_UPLOAD_BYTES if your server allows more)",
    )
}

/// Streams the encryption of `path` into the signed upload URL; returns the keyed
/// digest of the plaintext, computed from the same read.
async fn put_object(
    ctx: &Ctx,
    path: &Path,
    slot: &PresignResponse,
    encryption: Encryption,
    ciphertext_len: u64,
) -> anyhow::Result<[u8; 32]> {
    let file = tokio::fs::File::open(path).await?;
    let body = encryption.into_body(file);
    let summary = body.summary_handle();
    let bar = progress(ciphertext_len, "uploading");
    let b = bar.clone();
    let stream = body.inspect_ok(move |piece| b.inc(piece.len() as u64));
    let Some(resource) = slot.upload_resource.as_ref() else {
        return Err(fail(
            "bad_answer",
            "the server answered the upload slot without an upload URL",
            "check that --server points at a Hashdrop server",
        ));
    };
    let url = &resource.url;
    let method = Method::from_bytes(resource.method.as_bytes()).unwrap_or(Method::PUT);
    ctx.api.trace(&method, url);
    let result = ctx
        .api
        .http()
        .request(method, url)
        .header(CONTENT_LENGTH, ciphertext_len)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    bar.finish_and_clear();
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            // A failure inside the body stream (the file changed, a read error) shows
            // up as a transport error; prefer the crypto explanation when there is one.
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if let Some(c) = s.downcast_ref::<hashdrop_crypto::CryptoError>() {
                    return Err(fail(
                        "upload_failed",
                        format!("reading {} failed during upload ({c})", path.display()),
                        "upload it again once nothing is writing to it",
                    ));
                }
                src = s.source();
            }
            return Err(transport_error(e, &ctx.api.base()));
        }
    };
    if !resp.status().is_success() {
        let e = HttpError::from_response(resp).await;
        return Err(if e.status.as_u16() == 403 {
            fail(
                "upload_refused",
                format!("the storage refused the upload ({})", e.message()),
                "the upload link may have expired: run the upload again",
            )
        } else {
            e.into_user("upload slot")
        });
    }
    match summary.get() {
        Some(s) => Ok(s.keyed_digest),
        None => Err(fail(
            "upload_failed",
            "the upload ended before the whole file was encrypted",
            "retry the upload",
        )),
    }
}
