//! The vault: the account identity and the file id → file identity map, kept as an age
//! file encrypted with the vault passphrase (scrypt). Encoding and decoding only; the
//! CLI owns the file on disk (atomic writes, locking).
//!
//! Inside the age file is UTF-8 JSON:
//! `{"version":1,"account":"AGE-SECRET-KEY-1…","spare":[…],"files":{"<id>":"AGE-SECRET-KEY-1…"}}`.
//! `spare` holds identities that an import could not put anywhere else (another
//! device's account key, a conflicting file key), so that merging never drops a key.

use std::collections::BTreeMap;
use std::io::Cursor;

use age::secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::decrypt::decrypt;
use crate::encrypt::encrypt;
use crate::error::{CryptoError, Result};
use crate::keys::{AgeIdentity, Keys, Passphrase, Recipients, WorkFactor, DEFAULT_MAX_WORK_FACTOR};

const VAULT_VERSION: u32 = 1;

/// A user's keys. Every identity in it is zeroized when the vault is dropped.
#[derive(Debug, Clone)]
pub struct Vault {
    account: AgeIdentity,
    spare: Vec<AgeIdentity>,
    files: BTreeMap<String, AgeIdentity>,
}

/// What [`Vault::merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// File entries that were new to this vault.
    pub added: usize,
    /// File entries already present with the same key.
    pub unchanged: usize,
    /// File entries present with a different key: ours kept, theirs kept as a spare.
    pub conflicts: Vec<String>,
    /// Whether the other vault's account identity was new and kept as a spare.
    pub kept_other_account: bool,
}

impl Vault {
    /// A new vault with a freshly generated account identity.
    pub fn new() -> Self {
        Self::with_account(AgeIdentity::generate())
    }

    /// A new, empty vault around an existing account identity.
    pub fn with_account(account: AgeIdentity) -> Self {
        Self {
            account,
            spare: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    /// The long-term account identity every vault-mode file is also encrypted to.
    pub fn account(&self) -> &AgeIdentity {
        &self.account
    }

    /// The identity of one file.
    pub fn file(&self, file_id: &str) -> Option<&AgeIdentity> {
        self.files.get(file_id)
    }

    /// Records a file's identity. Refuses to overwrite a different key for the same id,
    /// which would lose the old one.
    pub fn insert(&mut self, file_id: &str, identity: AgeIdentity) -> Result<(), AgeIdentity> {
        match self.files.get(file_id) {
            Some(existing) if existing.to_recipient() != identity.to_recipient() => Err(identity),
            _ => {
                self.files.insert(file_id.to_owned(), identity);
                Ok(())
            }
        }
    }

    /// Forgets a file's identity (after the file is deleted on the server).
    pub fn remove(&mut self, file_id: &str) -> Option<AgeIdentity> {
        self.files.remove(file_id)
    }

    /// File ids with a key, in order.
    pub fn file_ids(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Number of file entries.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no file entries.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Every key worth trying on a file: its own key first, then the account key and
    /// the spares.
    pub fn keys_for(&self, file_id: &str) -> Keys {
        let mut ids: Vec<AgeIdentity> = self.files.get(file_id).cloned().into_iter().collect();
        ids.push(self.account.clone());
        ids.extend(self.spare.iter().cloned());
        Keys::Identities(ids)
    }

    /// Adds everything from `other` without ever dropping a key from either side.
    pub fn merge(&mut self, other: Vault) -> MergeReport {
        let mut report = MergeReport::default();
        let keep_spare = |spare: &mut Vec<AgeIdentity>, id: AgeIdentity| {
            let r = id.to_recipient();
            if r != self.account.to_recipient() && !spare.iter().any(|s| s.to_recipient() == r) {
                spare.push(id);
                true
            } else {
                false
            }
        };
        report.kept_other_account = keep_spare(&mut self.spare, other.account);
        for id in other.spare {
            keep_spare(&mut self.spare, id);
        }
        for (file_id, identity) in other.files {
            match self.files.get(&file_id) {
                None => {
                    self.files.insert(file_id, identity);
                    report.added += 1;
                }
                Some(ours) if ours.to_recipient() == identity.to_recipient() => {
                    report.unchanged += 1
                }
                Some(_) => {
                    keep_spare(&mut self.spare, identity);
                    report.conflicts.push(file_id);
                }
            }
        }
        report
    }

    /// The vault as an age file encrypted with `passphrase`.
    pub fn seal(&self, passphrase: &Passphrase, work_factor: WorkFactor) -> Result<Vec<u8>> {
        let json = self.to_json()?;
        let mut out = Vec::with_capacity(json.len() + 256);
        encrypt(
            Cursor::new(json.as_slice()),
            &mut out,
            Recipients::Passphrase {
                passphrase,
                work_factor,
            },
        )?;
        Ok(out)
    }

    /// Opens a vault file. A wrong passphrase is [`CryptoError::NoMatchingKey`].
    pub fn open(sealed: &[u8], passphrase: &Passphrase) -> Result<Self> {
        let mut json = Zeroizing::new(Vec::new());
        decrypt(
            sealed,
            &mut *json,
            &Keys::Passphrase {
                passphrase: passphrase.clone(),
                max_work_factor: DEFAULT_MAX_WORK_FACTOR,
            },
        )?;
        Self::from_json(&json)
    }

    fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        let account = self.account.to_secret_string();
        let spare: Vec<_> = self
            .spare
            .iter()
            .map(AgeIdentity::to_secret_string)
            .collect();
        let files: Vec<_> = self
            .files
            .iter()
            .map(|(id, key)| (id.as_str(), key.to_secret_string()))
            .collect();
        let doc = VaultDoc {
            version: VAULT_VERSION,
            account: account.expose_secret(),
            spare: spare.iter().map(|s| s.expose_secret()).collect(),
            files: files
                .iter()
                .map(|(id, k)| (*id, k.expose_secret()))
                .collect(),
        };
        let mut out = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *out, &doc)
            .map_err(|e| CryptoError::VaultFormat(e.to_string()))?;
        Ok(out)
    }

    fn from_json(json: &[u8]) -> Result<Self> {
        let doc: VaultDoc<'_> =
            serde_json::from_slice(json).map_err(|e| CryptoError::VaultFormat(e.to_string()))?;
        if doc.version != VAULT_VERSION {
            return Err(CryptoError::VaultFormat(format!(
                "vault version {} (this program reads version {VAULT_VERSION})",
                doc.version
            )));
        }
        let parse = |s: &str| -> Result<AgeIdentity> { s.parse() };
        Ok(Self {
            account: parse(doc.account)?,
            spare: doc.spare.into_iter().map(parse).collect::<Result<_>>()?,
            files: doc
                .files
                .into_iter()
                .map(|(id, k)| Ok((id.to_owned(), parse(k)?)))
                .collect::<Result<_>>()?,
        })
    }
}

impl Default for Vault {
    fn default() -> Self {
        Self::new()
    }
}

/// The JSON document, borrowing every secret so no extra copies linger.
#[derive(Serialize, Deserialize)]
struct VaultDoc<'a> {
    version: u32,
    #[serde(borrow)]
    account: &'a str,
    #[serde(borrow, default)]
    spare: Vec<&'a str>,
    #[serde(borrow)]
    files: BTreeMap<&'a str, &'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.into())
    }

    #[test]
    fn seal_and_open_roundtrip() {
        let mut vault = Vault::new();
        let key = AgeIdentity::generate();
        vault.insert("file-1", key.clone()).unwrap();
        let sealed = vault.seal(&pass("correct horse"), Some(10)).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        let opened = Vault::open(&sealed, &pass("correct horse")).unwrap();
        assert_eq!(
            opened.account().to_recipient(),
            vault.account().to_recipient()
        );
        assert_eq!(
            opened.file("file-1").unwrap().to_recipient(),
            key.to_recipient()
        );
    }

    #[test]
    fn wrong_passphrase_is_no_matching_key() {
        let sealed = Vault::new().seal(&pass("right"), Some(10)).unwrap();
        assert!(matches!(
            Vault::open(&sealed, &pass("wrong")),
            Err(CryptoError::NoMatchingKey)
        ));
    }

    #[test]
    fn insert_refuses_to_replace_a_different_key() {
        let mut vault = Vault::new();
        let first = AgeIdentity::generate();
        vault.insert("f", first.clone()).unwrap();
        assert!(vault.insert("f", AgeIdentity::generate()).is_err());
        assert!(vault.insert("f", first.clone()).is_ok());
        assert_eq!(
            vault.file("f").unwrap().to_recipient(),
            first.to_recipient()
        );
    }

    #[test]
    fn merge_never_drops_a_key() {
        let mut ours = Vault::new();
        let mut theirs = Vault::new();
        let shared = AgeIdentity::generate();
        let ours_only = AgeIdentity::generate();
        let conflicting_theirs = AgeIdentity::generate();
        ours.insert("shared", shared.clone()).unwrap();
        ours.insert("conflict", ours_only.clone()).unwrap();
        theirs.insert("shared", shared).unwrap();
        theirs
            .insert("conflict", conflicting_theirs.clone())
            .unwrap();
        theirs.insert("new", AgeIdentity::generate()).unwrap();
        let their_account = theirs.account().to_recipient();

        let report = ours.merge(theirs);

        assert_eq!(report.added, 1);
        assert_eq!(report.unchanged, 1);
        assert_eq!(report.conflicts, vec!["conflict".to_string()]);
        assert!(report.kept_other_account);
        assert_eq!(
            ours.file("conflict").unwrap().to_recipient(),
            ours_only.to_recipient()
        );
        let Keys::Identities(candidates) = ours.keys_for("conflict") else {
            panic!("vault keys are identities")
        };
        let recipients: Vec<_> = candidates.iter().map(AgeIdentity::to_recipient).collect();
        assert!(recipients.contains(&conflicting_theirs.to_recipient()));
        assert!(recipients.contains(&their_account));
    }

    #[test]
    fn foreign_json_is_a_format_error() {
        let mut out = Vec::new();
        let p = pass("p");
        encrypt(
            &b"{\"hello\":1}"[..],
            &mut out,
            Recipients::Passphrase {
                passphrase: &p,
                work_factor: Some(10),
            },
        )
        .unwrap();
        assert!(matches!(
            Vault::open(&out, &p),
            Err(CryptoError::VaultFormat(_))
        ));
    }
}
