//! `hashdrop upload`: size check, then one read of the file that digests and encrypts
//! while uploading, complete (which carries the keyed digest), vault. The name goes
//! to the server sealed (`crate::sealed`), never in clear.

use std::path::Path;

use futures_util::TryStreamExt;
use hashdrop_client::HttpError;
use hashdrop_crypto::{to_hex, AgeIdentity, Encryption, Passphrase, Recipients};
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

    // Secrets first (prompts must not race a progress bar), then the plaintext hash the
    // server's presign needs runs while scrypt opens the vault or derives the file key.
    enum Secret {
        Vault(Passphrase),
        File(Passphrase),
    }
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
    };
    let slot: PresignResponse = ctx
        .api
        .authed(|c| c.presign(&presign))
        .await?
        .map_err(|e| e.into_user("upload slot"))?;
    let file_id = slot.file_id.clone();

    let keyed_digest = match put_object(ctx, path, &slot, encryption, ciphertext_len).await {
        Ok(digest) => digest,
        Err(e) => {
            // Release the reserved quota now rather than waiting for the server's sweeper.
            let _ = ctx.api.authed(|c| c.delete_file(&file_id)).await;
            return Err(e);
        }
    };
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
            let saved = vault_store::update(&home, pass, move |v| {
                v.insert(&id, key).map_err(|_| {
                    fail(
                        "vault_conflict",
                        format!("the vault already holds a different key for {id}"),
                        "report a bug",
                    )
                })
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
    let mode = presign.key_management_mode.as_str();
    ctx.emit(
        format!(
            "Uploaded {name} ({}, {mode} mode)\nFile id:    {file_id}\nShare link: {link}",
            human_bytes(size)
        ),
        json!({
            "file_id": file_id,
            "file_name": name,
            "plaintext_size_bytes": size,
            "encrypted_size_bytes": done.uploaded_file_size,
            "key_management_mode": mode,
            "keyed_digest": to_hex(&keyed_digest),
            "share_link": link,
        }),
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
    let url = &slot.upload_resource.url;
    let method = Method::from_bytes(slot.upload_resource.method.as_bytes()).unwrap_or(Method::PUT);
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
