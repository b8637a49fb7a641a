//! The vault on disk: `vault.age` (an age file under the vault passphrase) plus
//! `vault.json` (public metadata: the account recipient). Every change re-reads the
//! vault under an exclusive lock, applies the change and writes atomically, so
//! parallel uploads never lose each other's entries.

use hashdrop_crypto::{CryptoError, Passphrase, Vault, WorkFactor};

use crate::error::{fail, from_crypto};
use crate::home::{Home, VaultMeta, VAULT_FILE, VAULT_META_FILE};
use crate::secrets::{self, SecretKind};

/// Minimum length of a new vault passphrase.
pub const MIN_VAULT_PASSPHRASE: usize = 8;

/// The scrypt work factor (log2) for new vaults and passphrase files:
/// `HASHDROP_SCRYPT_WORK_FACTOR` when set (tests and benchmarks use a small one),
/// else age calibrates about one second of work on this machine.
pub fn work_factor() -> WorkFactor {
    std::env::var("HASHDROP_SCRYPT_WORK_FACTOR")
        .ok()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .filter(|n| (1..=30).contains(n))
}

/// Highest scrypt work factor (log2) written into a passphrase-mode file. Such files
/// are opened by recipients in a browser (the share page), where scrypt runs in
/// JavaScript: 2^17 needs 128 MiB and took a median of 745 ms in headless Chromium
/// on the reference machine (docs/FORMAT.md, `web/bench/scrypt.mjs`), and
/// age-encryption refuses anything above 2^20. Vaults stay with age's calibration:
/// only this CLI opens them.
pub const PASSPHRASE_FILE_WORK_FACTOR: u8 = 17;

/// The work factor for a new passphrase-mode file: `HASHDROP_SCRYPT_WORK_FACTOR` when
/// set (tests use a small one), never above [`PASSPHRASE_FILE_WORK_FACTOR`].
pub fn passphrase_file_work_factor() -> u8 {
    capped_for_browsers(work_factor())
}

fn capped_for_browsers(requested: WorkFactor) -> u8 {
    requested.map_or(PASSPHRASE_FILE_WORK_FACTOR, |n| {
        n.min(PASSPHRASE_FILE_WORK_FACTOR)
    })
}

/// Whether a vault exists.
pub fn exists(home: &Home) -> bool {
    home.path(VAULT_FILE).exists()
}

/// Asks for the vault passphrase, confirming it when the vault is about to be created.
pub fn passphrase(home: &Home) -> anyhow::Result<Passphrase> {
    let creating = !exists(home);
    let min = if creating { MIN_VAULT_PASSPHRASE } else { 1 };
    Ok(Passphrase::new(secrets::secret(
        SecretKind::VaultPassword,
        creating,
        min,
    )?))
}

fn open_bytes(bytes: &[u8], pass: &Passphrase, what: &str) -> anyhow::Result<Vault> {
    Vault::open(bytes, pass).map_err(|e| match e {
        CryptoError::NoMatchingKey => fail(
            "wrong_vault_passphrase",
            format!("wrong passphrase for {what}"),
            "check HASHDROP_VAULT_PASSWORD or retype it",
        ),
        other => from_crypto(other, what),
    })
}

/// Opens the local vault.
pub fn open(home: &Home, pass: &Passphrase) -> anyhow::Result<Vault> {
    let bytes = home.read(VAULT_FILE)?.ok_or_else(|| {
        fail(
            "no_vault",
            format!("there is no vault in {}", home.dir().display()),
            "upload a file in vault mode to create one, or `hashdrop vault import FILE`",
        )
    })?;
    open_bytes(&bytes, pass, "the vault")
}

/// Opens a vault file that is not the local one (import).
pub fn open_foreign(bytes: &[u8], pass: &Passphrase, what: &str) -> anyhow::Result<Vault> {
    open_bytes(bytes, pass, what)
}

/// Opens the local vault, creating an empty one (fresh account identity) if there is
/// none. Returns whether it was created.
pub fn open_or_create(home: &Home, pass: &Passphrase) -> anyhow::Result<(Vault, bool)> {
    let _lock = home.lock("vault")?;
    if exists(home) {
        return Ok((open(home, pass)?, false));
    }
    let vault = Vault::new();
    write(home, &vault, pass)?;
    Ok((vault, true))
}

/// Applies `change` to the freshest vault under the lock and writes it back.
pub fn update<R>(
    home: &Home,
    pass: &Passphrase,
    change: impl FnOnce(&mut Vault) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let _lock = home.lock("vault")?;
    let mut vault = if exists(home) {
        open(home, pass)?
    } else {
        Vault::new()
    };
    let r = change(&mut vault)?;
    write(home, &vault, pass)?;
    Ok(r)
}

/// Seals and writes the vault and its metadata. Caller holds the lock.
fn write(home: &Home, vault: &Vault, pass: &Passphrase) -> anyhow::Result<()> {
    let sealed = vault
        .seal(pass, work_factor())
        .map_err(|e| from_crypto(e, "the vault"))?;
    home.write_atomic(VAULT_FILE, &sealed)?;
    let meta = VaultMeta {
        version: 1,
        account_recipient: vault.account().to_recipient().to_string(),
        files: vault.len(),
        updated_at: crate::util::now_rfc3339(),
    };
    home.write_atomic(VAULT_META_FILE, &serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_files_never_exceed_the_browser_cap() {
        assert_eq!(capped_for_browsers(None), PASSPHRASE_FILE_WORK_FACTOR);
        assert_eq!(capped_for_browsers(Some(22)), PASSPHRASE_FILE_WORK_FACTOR);
        assert_eq!(capped_for_browsers(Some(10)), 10);
    }
}
