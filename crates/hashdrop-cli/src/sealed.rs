//! A file's name and media type sealed on the client (docs/FORMAT.md, "Sealed name and
//! media type"): sealed at upload, opened by recipients with the link's key or the
//! passphrase, and by the owner with the vault's account identity.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hashdrop_crypto::{
    decrypt, encrypt, open_metadata_keeping_key, AgeRecipient, CryptoError, Encryption, Keys,
    Recipients, Vault,
};
use hashdrop_wire::{FileMetadata, SealedMetadata};

use crate::error::{from_crypto, Fail};
use crate::{vault_store, Ctx};

/// Seals `meta` for whoever can open `encryption`'s file, and for the owner's account
/// key (`owner`) when there is one.
pub fn seal(
    encryption: &Encryption,
    owner: Option<&AgeRecipient>,
    meta: &FileMetadata,
) -> anyhow::Result<SealedMetadata> {
    let mut json = serde_json::to_vec(meta)?;
    // Padded with JSON whitespace to a multiple of PAD bytes, so the sealed sizes
    // tell the server a name's length only to within that many bytes.
    json.resize(json.len().next_multiple_of(PAD), b' ');
    let sealed = encryption
        .seal_metadata(&json)
        .map_err(|e| from_crypto(e, "the file name"))?;
    let owner_copy = match owner {
        Some(account) => {
            let mut copy = Vec::new();
            encrypt(&json[..], &mut copy, Recipients::Account(account))
                .map_err(|e| from_crypto(e, "the file name"))?;
            Some(B64.encode(copy))
        }
        None => None,
    };
    Ok(SealedMetadata {
        age_header: B64.encode(encryption.header()),
        sealed: B64.encode(sealed),
        owner_copy,
    })
}

/// Sealed metadata is padded to a multiple of this many bytes.
const PAD: usize = 64;

/// Opens the recipients' copy with a key that opens the file. Returns the metadata,
/// the header it was opened with, which the downloaded file must start with
/// ([`HeaderMatch`]: otherwise the server could show one file's name with another),
/// and the keys to open that file with: its file key, so a passphrase's scrypt is not
/// run a second time.
pub fn open_for_recipient(
    meta: &SealedMetadata,
    keys: &Keys,
) -> Result<(FileMetadata, Vec<u8>, Keys), CryptoError> {
    let header = B64
        .decode(&meta.age_header)
        .map_err(|_| CryptoError::HeaderDamaged)?;
    let sealed = B64
        .decode(&meta.sealed)
        .map_err(|_| CryptoError::MetadataDamaged)?;
    let (json, file_key) = open_metadata_keeping_key(&header, keys, &sealed)?;
    let opened = parse(&json).ok_or(CryptoError::MetadataDamaged)?;
    Ok((opened, header, Keys::FileKey(file_key)))
}

/// The JSON inside, with a name a person could have given: 1 to 255 characters, no
/// control characters (the uploader chose it; it is printed and becomes a file name).
fn parse(json: &[u8]) -> Option<FileMetadata> {
    let meta: FileMetadata = serde_json::from_slice(json).ok()?;
    let n = meta.name.chars().count();
    ((1..=255).contains(&n) && !meta.name.chars().any(char::is_control)).then_some(meta)
}

/// Checks, as a download streams by, that it starts with the header a sealed name was
/// opened with.
#[derive(Debug)]
pub struct HeaderMatch {
    expected: Vec<u8>,
    seen: usize,
    differs: bool,
}

impl HeaderMatch {
    /// Expects the stream to start with `header`.
    pub fn new(header: Vec<u8>) -> Self {
        Self {
            expected: header,
            seen: 0,
            differs: false,
        }
    }

    /// The next piece of the stream.
    pub fn feed(&mut self, piece: &[u8]) {
        let want = &self.expected[self.seen..];
        let n = want.len().min(piece.len());
        if want[..n] != piece[..n] {
            self.differs = true;
        }
        self.seen += n;
    }

    /// Whether the whole header went by, unchanged.
    pub fn matched(&self) -> bool {
        !self.differs && self.seen == self.expected.len()
    }

    /// Whether what went by so far already differs from the header.
    pub fn differs(&self) -> bool {
        self.differs
    }
}

/// Opens the owner's copy with the vault's keys (the account identity, and the file's
/// own and the spare identities for good measure); `None` when nothing opens it.
fn open_for_owner(meta: &SealedMetadata, vault: &Vault, file_id: &str) -> Option<FileMetadata> {
    let copy = B64.decode(meta.owner_copy.as_deref()?).ok()?;
    let mut json = Vec::new();
    decrypt(&copy[..], &mut json, &vault.keys_for(file_id)).ok()?;
    parse(&json)
}

/// What the owner's commands show a person for a sealed name they cannot open (no
/// vault here, a vault of another account, or no passphrase given). `--json` leaves
/// such a name empty instead, as the server has it: with `metadata` present, an empty
/// name tells a script the name is sealed and was not opened, which a placeholder
/// could not (a file may be called "(sealed name)").
pub const UNREADABLE: &str = "(sealed name)";

/// Fills in the clear `name` of each sealed file of the owner's from its owner copy.
/// The vault is opened (asking for its passphrase) only when some name is sealed.
pub fn reveal_owner_names<'a>(
    ctx: &Ctx,
    files: impl IntoIterator<Item = (&'a str, Option<&'a SealedMetadata>, &'a mut String)>,
) -> anyhow::Result<()> {
    let sealed: Vec<_> = files
        .into_iter()
        .filter_map(|(id, meta, name)| meta.map(|m| (id, m, name)))
        .collect();
    if sealed.is_empty() {
        return Ok(());
    }
    let home = ctx.home();
    let vault = if vault_store::exists(home) {
        match vault_store::passphrase(home) {
            Ok(pass) => Some(vault_store::open(home, &pass)?),
            // No terminal to ask on and no passphrase in the environment: a script
            // that only wants ids still gets its listing. A wrong passphrase fails.
            Err(e)
                if e.downcast_ref::<Fail>()
                    .is_some_and(|f| f.code == "no_secret") =>
            {
                ctx.note(
                    "Names are sealed and the vault passphrase was not given \
                     (HASHDROP_VAULT_PASSWORD); they are shown as sealed.",
                );
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let unreadable = if ctx.json { "" } else { UNREADABLE };
    for (id, meta, name) in sealed {
        *name = vault
            .as_ref()
            .and_then(|v| open_for_owner(meta, v, id))
            .map_or_else(|| unreadable.to_string(), |m| m.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_must_come_first_and_whole() {
        let feed = |pieces: &[&[u8]]| {
            let mut m = HeaderMatch::new(b"age-header".to_vec());
            for p in pieces {
                m.feed(p);
            }
            m.matched()
        };
        assert!(feed(&[b"age-header", b"payload"]));
        assert!(feed(&[b"age", b"-hea", b"der+payload"]));
        assert!(!feed(&[b"age-heaDer+payload"]), "another header");
        assert!(!feed(&[b"age-"]), "cut short");
        assert!(!feed(&[b"xage-header"]));
    }

    #[test]
    fn names_are_what_a_person_could_have_given() {
        let named = |name: &str| {
            let meta = FileMetadata {
                name: name.into(),
                media_type: None,
            };
            parse(&serde_json::to_vec(&meta).unwrap())
        };
        assert!(named("report.pdf").is_some());
        assert!(named("").is_none());
        assert!(named("a\nforged line").is_none());
        assert!(named(&"x".repeat(256)).is_none());
        // Padding is JSON whitespace.
        let mut json = br#"{"name":"a.txt"}"#.to_vec();
        json.resize(64, b' ');
        assert_eq!(parse(&json).unwrap().name, "a.txt");
    }
}
