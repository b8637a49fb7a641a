//! A file's name and media type, sealed for whoever can open the file.
//!
//! The metadata is one STREAM chunk (counter 0, marked final), exactly like a one-chunk
//! age payload, but under its own key: `HKDF-SHA-256(ikm = file key, salt = none,
//! info = METADATA_KEY_LABEL)`. A holder of the link's key or the passphrase opens the
//! file's age header, which gives the file key, which gives this key; the server,
//! which stores the header and the sealed bytes, has neither. Each file key seals one
//! metadata message, so the fixed nonce is never reused under a key. See
//! `docs/FORMAT.md`.

use crate::encrypt::Encryption;
use crate::error::{CryptoError, Result};
use crate::header::open_header;
use crate::keys::{Keys, OpenedFileKey};
use crate::stream::{ChunkCipher, PayloadKey, CHUNK_SIZE, TAG_SIZE};

/// The HKDF-SHA-256 `info` that turns an age file key into the metadata key.
pub const METADATA_KEY_LABEL: &[u8] = b"hashdrop.metadata.v1";

/// Seals `plain` as the one (final) chunk under `key`.
pub(crate) fn seal(key: &PayloadKey, plain: &[u8]) -> Result<Vec<u8>> {
    if plain.len() > CHUNK_SIZE {
        return Err(CryptoError::BufferLength {
            expected: CHUNK_SIZE as u64,
            actual: plain.len() as u64,
        });
    }
    let mut sealed = vec![0u8; plain.len() + TAG_SIZE];
    ChunkCipher::sealer(key)?.seal(0, true, plain, &mut sealed)?;
    Ok(sealed)
}

/// Opens what [`seal`] made under `key`.
pub(crate) fn open(key: &PayloadKey, sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < TAG_SIZE || sealed.len() > CHUNK_SIZE + TAG_SIZE {
        return Err(CryptoError::MetadataDamaged);
    }
    let mut plain = vec![0u8; sealed.len() - TAG_SIZE];
    if ChunkCipher::opener(key)?.open(0, true, sealed, &mut plain) {
        Ok(plain)
    } else {
        Err(CryptoError::MetadataDamaged)
    }
}

impl Encryption {
    /// The age header this encryption writes first (payload nonce included): what a
    /// recipient needs, with a key, to open the sealed metadata before downloading.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seals `plain` (at most 64 KiB; the metadata JSON) for the holders of this
    /// file's key.
    pub fn seal_metadata(&self, plain: &[u8]) -> Result<Vec<u8>> {
        seal(&self.metadata_key, plain)
    }
}

/// Opens metadata sealed by [`Encryption::seal_metadata`], given that file's header
/// and a key that opens it. Fails like a decryption would on the header (wrong key,
/// damaged header), and with [`CryptoError::MetadataDamaged`] if the sealed bytes
/// were altered or belong to another file.
pub fn open_metadata(header: &[u8], keys: &Keys, sealed: &[u8]) -> Result<Vec<u8>> {
    open_metadata_keeping_key(header, keys, sealed).map(|(plain, _)| plain)
}

/// [`open_metadata`], also returning the file's key: the file is then opened with
/// `Keys::FileKey` instead of opening its header with `keys` a second time (for a
/// passphrase, a second scrypt).
pub fn open_metadata_keeping_key(
    header: &[u8],
    keys: &Keys,
    sealed: &[u8],
) -> Result<(Vec<u8>, OpenedFileKey)> {
    let mut input = header;
    let opened = open_header(&mut input, keys)?;
    let plain = open(&opened.metadata_key, sealed)?;
    Ok((plain, opened.file_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AgeIdentity, Passphrase, Recipients};
    use crate::stream::FileKeyBytes;

    const JSON: &[u8] = br#"{"name":"report.pdf","type":"application/pdf"}"#;

    fn vault_file() -> (AgeIdentity, AgeIdentity, Encryption) {
        let (file, account) = (AgeIdentity::generate(), AgeIdentity::generate());
        let enc = Encryption::new(Recipients::Vault {
            file: &file.to_recipient(),
            account: &account.to_recipient(),
        })
        .unwrap();
        (file, account, enc)
    }

    #[test]
    fn either_vault_key_opens_the_metadata_with_the_header_alone() {
        let (file, account, enc) = vault_file();
        let sealed = enc.seal_metadata(JSON).unwrap();
        for key in [file, account] {
            let opened = open_metadata(enc.header(), &Keys::identity(key), &sealed).unwrap();
            assert_eq!(opened, JSON);
        }
    }

    #[test]
    fn the_passphrase_opens_passphrase_metadata_and_a_wrong_one_does_not() {
        let enc = Encryption::new(Recipients::Passphrase {
            passphrase: &Passphrase::new("correct horse".into()),
            work_factor: Some(10),
        })
        .unwrap();
        let sealed = enc.seal_metadata(JSON).unwrap();
        let right = Keys::passphrase(Passphrase::new("correct horse".into()));
        assert_eq!(open_metadata(enc.header(), &right, &sealed).unwrap(), JSON);
        let wrong = Keys::passphrase(Passphrase::new("wrong horse".into()));
        assert!(matches!(
            open_metadata(enc.header(), &wrong, &sealed),
            Err(CryptoError::NoMatchingKey)
        ));
    }

    /// The key kept from opening a passphrase file's name opens its content with no
    /// second scrypt, and opens no other file under the same passphrase.
    #[test]
    fn the_key_kept_from_the_name_opens_that_file_and_no_other() {
        let passphrase = || Passphrase::new("correct horse".into());
        let new_file = |plain: &[u8]| {
            let enc = Encryption::new(Recipients::Passphrase {
                passphrase: &passphrase(),
                work_factor: Some(10),
            })
            .unwrap();
            let sealed = enc.seal_metadata(JSON).unwrap();
            let header = enc.header().to_vec();
            let mut file = Vec::new();
            enc.encrypt(plain, &mut file).unwrap();
            (header, sealed, file)
        };
        let (header, sealed, file) = new_file(b"the content");
        let (name, key) =
            open_metadata_keeping_key(&header, &Keys::passphrase(passphrase()), &sealed).unwrap();
        assert_eq!(name, JSON);
        let with_key = Keys::FileKey(key);
        let mut plain = Vec::new();
        crate::decrypt(&file[..], &mut plain, &with_key).unwrap();
        assert_eq!(plain, b"the content");

        // Another file sealed under the same passphrase has another file key: its
        // header's MAC does not verify under this one.
        let (_, _, other) = new_file(b"other content");
        let mut out = Vec::new();
        assert!(crate::decrypt(&other[..], &mut out, &with_key).is_err());
        assert!(out.is_empty(), "no plaintext of the other file");
    }

    #[test]
    fn altered_or_transplanted_metadata_is_refused() {
        let (file, _, enc) = vault_file();
        let keys = Keys::identity(file);
        let mut sealed = enc.seal_metadata(JSON).unwrap();
        sealed[3] ^= 1;
        assert!(matches!(
            open_metadata(enc.header(), &keys, &sealed),
            Err(CryptoError::MetadataDamaged)
        ));

        // Another file's metadata shown with this file's header: sealed under another
        // file key, so this file's key does not open it.
        let (_, _, other) = vault_file();
        let theirs = other.seal_metadata(JSON).unwrap();
        assert!(matches!(
            open_metadata(enc.header(), &keys, &theirs),
            Err(CryptoError::MetadataDamaged)
        ));
        assert!(matches!(
            open_metadata(enc.header(), &keys, &[0u8; 8]),
            Err(CryptoError::MetadataDamaged)
        ));
    }

    /// The vector in docs/FORMAT.md: file key 00 01 … 0f, the JSON above.
    #[test]
    fn the_format_vector_holds() {
        let file_key = FileKeyBytes(std::array::from_fn(|i| i as u8));
        let sealed = seal(&PayloadKey::for_metadata(&file_key), JSON).unwrap();
        assert_eq!(sealed.len(), JSON.len() + TAG_SIZE);
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, METADATA_VECTOR_HEX);
        assert_eq!(
            open(&PayloadKey::for_metadata(&file_key), &sealed).unwrap(),
            JSON
        );
    }

    /// Computed independently with Python's `hmac` (HKDF) and `cryptography`
    /// (ChaCha20-Poly1305); docs/FORMAT.md has the script.
    const METADATA_VECTOR_HEX: &str =
        "ca6c428a518199af94bbd8a9858c2c357d904842b8000b07ee03b91c6c36c996\
         8a4158c087ac16c7898df2e9a4cc33d2dda2c68d09d3ef370f3ebb6f1aa6";
}
