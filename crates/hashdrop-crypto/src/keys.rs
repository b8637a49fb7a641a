//! Keys: X25519 identities (file and account keys), their public recipients, and
//! passphrases. Secrets wipe themselves on drop and never print through `Debug`.

use std::fmt;
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};

use crate::error::CryptoError;

/// An age X25519 identity (`AGE-SECRET-KEY-1...`): a per-file key or an account key.
///
/// The secret scalar is zeroized on drop by the underlying implementation.
#[derive(Clone)]
pub struct AgeIdentity(pub(crate) age::x25519::Identity);

impl AgeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// The public half, to encrypt to.
    pub fn to_recipient(&self) -> AgeRecipient {
        AgeRecipient(self.0.to_public())
    }

    /// The Bech32 `AGE-SECRET-KEY-1...` form, as the stock `age` tool reads it.
    pub fn to_secret_string(&self) -> SecretString {
        self.0.to_string()
    }
}

impl FromStr for AgeIdentity {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        age::x25519::Identity::from_str(s.trim())
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey("expected an AGE-SECRET-KEY-1... identity"))
    }
}

impl fmt::Debug for AgeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeIdentity")
            .field("recipient", &self.0.to_public().to_string())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The public half of an [`AgeIdentity`] (`age1...`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AgeRecipient(pub(crate) age::x25519::Recipient);

impl FromStr for AgeRecipient {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        age::x25519::Recipient::from_str(s.trim())
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey("expected an age1... recipient"))
    }
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgeRecipient({})", self.0)
    }
}

/// A passphrase for age's scrypt recipient. Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Passphrase(pub(crate) SecretString);

impl Passphrase {
    /// Wraps a passphrase; the `String` is moved in and wiped when this is dropped.
    pub fn new(passphrase: String) -> Self {
        Self(SecretString::from(passphrase))
    }

    /// Whether the passphrase is empty (callers usually refuse those).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The scrypt cost age calibrates on this machine when none is given (about one
/// second of work). Tests pass a small explicit factor instead.
pub type WorkFactor = Option<u8>;

/// Whom a file is encrypted to, per the key modes in ARCHITECTURE.md §4.
#[derive(Debug, Clone, Copy)]
pub enum Recipients<'a> {
    /// Vault mode: the fresh per-file identity and the owner's account identity.
    Vault {
        /// Public half of the per-file identity (travels in share links).
        file: &'a AgeRecipient,
        /// Public half of the owner's long-term account identity (kept in the vault).
        account: &'a AgeRecipient,
    },
    /// Passphrase mode: age's scrypt recipient, alone as age requires.
    Passphrase {
        /// The passphrase.
        passphrase: &'a Passphrase,
        /// log2 of the scrypt work factor; `None` lets age calibrate (~1 s).
        work_factor: WorkFactor,
    },
    /// One X25519 recipient alone: the owner's copy of a file's sealed name and type,
    /// to the account identity.
    Account(&'a AgeRecipient),
}

/// A file's key, as a header once opened it ([`crate::open_metadata_keeping_key`]):
/// it opens that same file again without the identity or passphrase that opened it,
/// so a passphrase file's scrypt runs once for its sealed name and its content
/// together. age still checks the header's MAC with it, so it opens no other file.
#[derive(Clone)]
pub struct OpenedFileKey(pub(crate) crate::stream::FileKeyBytes);

impl std::fmt::Debug for OpenedFileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedFileKey(redacted)")
    }
}

/// What to try when opening a file.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Any number of X25519 identities (a file identity, the account identity, ...).
    Identities(Vec<AgeIdentity>),
    /// A passphrase, with the largest scrypt work factor (log2) accepted.
    Passphrase {
        /// The passphrase.
        passphrase: Passphrase,
        /// Refuse files asking for more scrypt work than 2^this.
        max_work_factor: u8,
    },
    /// The key of one file, opened before.
    FileKey(OpenedFileKey),
}

/// The default cap on scrypt work: 2^22 takes several seconds and 4 GiB-seconds of
/// memory; anything above is either hostile or not from us.
pub const DEFAULT_MAX_WORK_FACTOR: u8 = 22;

impl Keys {
    /// One identity.
    pub fn identity(identity: AgeIdentity) -> Self {
        Self::Identities(vec![identity])
    }

    /// A passphrase with the default work-factor cap.
    pub fn passphrase(passphrase: Passphrase) -> Self {
        Self::Passphrase {
            passphrase,
            max_work_factor: DEFAULT_MAX_WORK_FACTOR,
        }
    }

    pub(crate) fn max_work_factor(&self) -> u8 {
        match self {
            Self::Identities(_) | Self::FileKey(_) => DEFAULT_MAX_WORK_FACTOR,
            Self::Passphrase {
                max_work_factor, ..
            } => *max_work_factor,
        }
    }

    pub(crate) fn to_age(&self) -> Vec<Box<dyn age::Identity>> {
        match self {
            Self::Identities(ids) => ids
                .iter()
                .map(|id| Box::new(id.0.clone()) as Box<dyn age::Identity>)
                .collect(),
            Self::Passphrase {
                passphrase,
                max_work_factor,
            } => {
                let mut id = age::scrypt::Identity::new(passphrase.0.clone());
                id.set_max_work_factor(*max_work_factor);
                vec![Box::new(id)]
            }
            Self::FileKey(key) => vec![Box::new(crate::header::KnownFileKey(key.clone()))],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_text_roundtrips_and_debug_hides_the_secret() {
        let id = AgeIdentity::generate();
        let text = id.to_secret_string();
        assert!(text.expose_secret().starts_with("AGE-SECRET-KEY-1"));
        let parsed: AgeIdentity = text.expose_secret().parse().unwrap();
        assert_eq!(parsed.to_recipient(), id.to_recipient());
        let debug = format!("{id:?}");
        assert!(!debug.contains(&text.expose_secret()[16..]));
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        let p = Passphrase::new("hunter2".into());
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
    }

    #[test]
    fn garbage_keys_are_rejected() {
        assert!(matches!(
            "AGE-SECRET-KEY-1nope".parse::<AgeIdentity>(),
            Err(CryptoError::InvalidKey(_))
        ));
        assert!("age1xyz".parse::<AgeRecipient>().is_err());
    }
}
