//! `hashdrop vault export|import`.

use std::path::Path;

use hashdrop_crypto::Passphrase;
use serde_json::json;

use crate::error::fail;
use crate::home::{write_atomic, VAULT_FILE};
use crate::secrets::{self, SecretKind};
use crate::{vault_store, Ctx};

/// `vault export FILE`: the vault file as it is (an age file under the vault passphrase).
pub fn export(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let home = ctx.home();
    let bytes = {
        let _lock = home.lock("vault")?;
        home.read(VAULT_FILE)?
    }
    .ok_or_else(|| {
        fail(
            "no_vault",
            format!("there is no vault in {}", home.dir().display()),
            "upload a file in vault mode first",
        )
    })?;
    write_atomic(file, &bytes)?;
    ctx.emit(
        format!(
            "Exported the vault to {} (an age file; open it with your vault passphrase).",
            file.display()
        ),
        json!({"exported": file}),
    );
    Ok(())
}

/// `vault import FILE`: merges every key of FILE into the local vault.
pub fn import(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).map_err(|e| {
        fail(
            "no_file",
            format!("cannot read {} ({e})", file.display()),
            "check the path",
        )
    })?;
    let home = ctx.home();
    let pass = vault_store::passphrase(home)?;
    let what = format!("the vault {}", file.display());
    // The imported vault is usually under the same passphrase; if not, ask for its own.
    let theirs = match vault_store::open_foreign(&bytes, &pass, &what) {
        Ok(v) => v,
        Err(e)
            if e.downcast_ref::<crate::error::Fail>()
                .is_some_and(|f| f.code == "wrong_vault_passphrase") =>
        {
            let other =
                Passphrase::new(secrets::secret(SecretKind::ImportVaultPassword, false, 1)?);
            vault_store::open_foreign(&bytes, &other, &what)?
        }
        Err(e) => return Err(e),
    };
    let report = vault_store::update(home, &pass, move |v| Ok(v.merge(theirs)))?;
    ctx.emit(
        format!(
            "Imported {}: {} new keys, {} already present, {} conflicting kept as spares{}.",
            file.display(),
            report.added,
            report.unchanged,
            report.conflicts.len(),
            if report.kept_other_account {
                ", its account key kept as a spare"
            } else {
                ""
            }
        ),
        json!({
            "added": report.added,
            "unchanged": report.unchanged,
            "conflicts": report.conflicts,
            "kept_other_account": report.kept_other_account,
        }),
    );
    Ok(())
}
