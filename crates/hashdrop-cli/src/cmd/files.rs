//! `hashdrop files list|show|delete` and `hashdrop share`.

use hashdrop_crypto::secrecy::ExposeSecret;
use hashdrop_wire::{FileDetails, FileSummary, KeyMode};
use reqwest::StatusCode;
use serde_json::json;

use crate::api::Explain;
use crate::error::{fail, Fail};
use crate::util::{human_bytes, printable};
use crate::{sealed, secrets, vault_store, Ctx};

fn check_prefix(prefix: &str) -> anyhow::Result<String> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.is_empty() || p.len() > 36 || !p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(fail(
            "bad_id",
            format!("{prefix:?} is not a file id or id prefix"),
            "use the id shown by `hashdrop files list` (or its first characters)",
        ));
    }
    Ok(p)
}

/// The one file of the user's whose id starts with `prefix`, its name opened if it
/// is sealed. An ambiguous prefix prints the candidates and fails without doing
/// anything.
pub async fn find_one(ctx: &Ctx, prefix: &str) -> anyhow::Result<FileDetails> {
    let p = check_prefix(prefix)?;
    let mut found: Vec<FileDetails> = match ctx.api.authed(|c| c.details(&p)).await? {
        Ok(v) => v,
        Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e.into_user("file")),
    };
    sealed::reveal_owner_names(
        ctx,
        found
            .iter_mut()
            .map(|f| (f.file_id.as_str(), f.metadata.as_ref(), &mut f.file_name)),
    )?;
    if let Some(exact) = found.iter().find(|f| f.file_id == p) {
        return Ok(exact.clone());
    }
    match found.len() {
        0 => Err(fail(
            "not_found",
            format!("no file of yours has an id starting with {p}"),
            "see `hashdrop files list`",
        )),
        1 => Ok(found.into_iter().next().expect("one element")),
        n => {
            if !ctx.json {
                println!("{n} files match {p}:");
                for f in &found {
                    // Every field came from the server.
                    let line = format!("  {}  {}", f.file_id, f.file_name);
                    println!("{}", printable(&line, false));
                }
            }
            let list: Vec<_> = found
                .iter()
                .map(|f| json!({"file_id": f.file_id, "file_name": f.file_name}))
                .collect();
            Err(anyhow::Error::new(Fail {
                code: "ambiguous",
                what: format!("the id prefix {p} matches {n} files; nothing was done"),
                todo: "give more characters of the id".into(),
                detail: Some(json!({ "candidates": list })),
            }))
        }
    }
}

/// `files list`.
pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut files: Vec<FileSummary> = match ctx.api.authed(|c| c.list_all()).await? {
        Ok(v) => v,
        Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e.into_user("files")),
    };
    sealed::reveal_owner_names(
        ctx,
        files
            .iter_mut()
            .map(|f| (f.file_id.as_str(), f.metadata.as_ref(), &mut f.file_name)),
    )?;
    if ctx.json {
        println!("{}", serde_json::to_string(&files)?);
        return Ok(());
    }
    if files.is_empty() {
        println!("No files yet. Upload one with `hashdrop upload PATH`.");
        return Ok(());
    }
    println!(
        "{:<36}  {:>10}  {:<10}  {:<8}  {:<20}  NAME",
        "ID", "SIZE", "MODE", "STATUS", "CREATED"
    );
    for f in &files {
        // Every field came from the server.
        let line = format!(
            "{:<36}  {:>10}  {:<10}  {:<8}  {:<20}  {}",
            f.file_id,
            human_bytes(f.encrypted_size_bytes),
            f.key_management_mode.as_str(),
            f.status,
            f.created_at.get(..19).unwrap_or(&f.created_at),
            f.file_name
        );
        println!("{}", printable(&line, false));
    }
    Ok(())
}

fn file_key(ctx: &Ctx, f: &FileDetails) -> anyhow::Result<String> {
    if f.key_management_mode != KeyMode::Vault {
        return Err(fail(
            "passphrase_file",
            format!(
                "{} is encrypted with a passphrase; there is no key to show",
                f.file_id
            ),
            "share the passphrase with the recipient through another channel",
        ));
    }
    let home = ctx.home();
    let pass = vault_store::passphrase(home)?;
    let vault = vault_store::open(home, &pass)?;
    let key = vault.file(&f.file_id).ok_or_else(|| {
        fail(
            "no_key",
            format!("the local vault has no key for {}", f.file_id),
            "import the vault of the machine that uploaded it (`hashdrop vault import FILE`)",
        )
    })?;
    Ok(key.to_secret_string().expose_secret().to_string())
}

/// `files show`.
pub async fn show(ctx: &Ctx, prefix: &str, reveal_key: bool) -> anyhow::Result<()> {
    let f = find_one(ctx, prefix).await?;
    let key = if reveal_key {
        Some(file_key(ctx, &f)?)
    } else {
        None
    };
    let mut human = format!(
        "File id:        {}\nName:           {}\nStatus:         {}\nKey mode:       {}\n\
         Plaintext size: {} ({} bytes)\nEncrypted size: {} bytes\n{}\n\
         Downloads:      {}{}\nExpires:        {}\nDownload URL:   {}\nShare page:     {}",
        // Server text, one line per field: a newline in a name must not forge a line.
        printable(&f.file_id, false),
        printable(&f.file_name, false),
        printable(&f.status, false),
        f.key_management_mode.as_str(),
        human_bytes(f.plaintext_size_bytes),
        f.plaintext_size_bytes,
        f.encrypted_size_bytes,
        match &f.keyed_digest {
            Some(d) => format!("Keyed digest:   {}", printable(d, false)),
            None => format!("SHA-256:        {}", printable(&f.plaintext_hash, false)),
        },
        f.download_count,
        f.max_downloads
            .map(|m| format!(" of {m}"))
            .unwrap_or_default(),
        printable(f.expires_at.as_deref().unwrap_or("never"), false),
        printable(&f.download_url, false),
        printable(&f.share_url, false),
    );
    if let Some(k) = &key {
        human.push_str(&format!("\nKey:            {k}"));
    }
    let mut j = serde_json::to_value(&f)?;
    if let Some(k) = key {
        j["key"] = json!(k);
    }
    ctx.emit(human, j);
    Ok(())
}

/// `share`.
pub async fn share(ctx: &Ctx, prefix: &str, qr: bool) -> anyhow::Result<()> {
    let f = find_one(ctx, prefix).await?;
    if f.status != "uploaded" {
        return Err(fail(
            "not_uploaded",
            format!("{} is {}, not uploaded", f.file_id, f.status),
            "upload it again",
        ));
    }
    let base = format!("{}/d/{}", ctx.api.base(), f.file_id);
    let link = match f.key_management_mode {
        KeyMode::Vault => format!("{base}#{}", file_key(ctx, &f)?),
        KeyMode::Passphrase => base,
    };
    let drawing = if qr {
        Some(crate::qr::render(&link)?)
    } else {
        None
    };
    let mut answer = json!({"file_id": f.file_id, "share_link": link, "key_management_mode": f.key_management_mode});
    let human = match &drawing {
        Some(d) => {
            answer["qr"] = json!(d);
            format!("{d}\n{link}")
        }
        None => link.clone(),
    };
    ctx.emit(&human, answer);
    if f.key_management_mode == KeyMode::Passphrase {
        ctx.note("This file needs its passphrase: send it to the recipient separately.");
    }
    Ok(())
}

/// `files delete`.
pub async fn delete(ctx: &Ctx, prefix: &str, yes: bool) -> anyhow::Result<()> {
    let f = find_one(ctx, prefix).await?;
    let asked = format!("Delete {} ({})?", f.file_name, f.file_id);
    if !yes && !secrets::confirm(&printable(&asked, false))? {
        return Err(fail(
            "not_confirmed",
            format!("{} was not deleted", f.file_id),
            "pass --yes to delete without a question",
        ));
    }
    if let Err(e) = ctx.api.authed(|c| c.delete_file(&f.file_id)).await? {
        return Err(e.into_user("file"));
    }
    ctx.emit(
        format!("Deleted {} ({}).", f.file_name, f.file_id),
        json!({"deleted": true, "file_id": f.file_id, "file_name": f.file_name}),
    );
    Ok(())
}
