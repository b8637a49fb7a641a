//! The age header, handled entirely by the age crate.
//!
//! The age crate does not hand out the file key, and we need it to run the payload
//! through our own (faster) STREAM implementation. So we pass it recipients and
//! identities wrapped in thin adapters that remember the file key as it goes by. On
//! decryption the age crate only reports success after it has verified the header MAC
//! with that key, so a key we capture is never trusted before age has vouched for it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, BufRead, Read};

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};

use crate::digest::DigestKey;
use crate::error::{CryptoError, Result};
use crate::keys::{Keys, Recipients};
use crate::stream::{FileKeyBytes, PayloadKey, PAYLOAD_NONCE_SIZE};

/// Headers larger than this are refused before they can exhaust memory.
const MAX_HEADER_BYTES: usize = 1 << 20;

struct CapturingRecipient<'a> {
    inner: &'a dyn age::Recipient,
    file_key: &'a RefCell<Option<FileKeyBytes>>,
}

impl age::Recipient for CapturingRecipient<'_> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> std::result::Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        *self.file_key.borrow_mut() = Some(FileKeyBytes(*file_key.expose_secret()));
        self.inner.wrap_file_key(file_key)
    }
}

struct CapturingIdentity<'a> {
    inner: &'a dyn age::Identity,
    file_key: &'a RefCell<Option<FileKeyBytes>>,
}

impl CapturingIdentity<'_> {
    fn remember(
        &self,
        result: Option<std::result::Result<FileKey, age::DecryptError>>,
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        if let Some(Ok(key)) = &result {
            *self.file_key.borrow_mut() = Some(FileKeyBytes(*key.expose_secret()));
        }
        result
    }
}

impl age::Identity for CapturingIdentity<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &Stanza,
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        self.remember(self.inner.unwrap_stanza(stanza))
    }

    fn unwrap_stanzas(
        &self,
        stanzas: &[Stanza],
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        self.remember(self.inner.unwrap_stanzas(stanzas))
    }
}

/// A file key known from an earlier opening of the same header. It answers the first
/// stanza it is shown; age then accepts the header only if its MAC verifies under
/// this key, so it never opens a header it did not come from.
pub(crate) struct KnownFileKey(pub(crate) crate::keys::OpenedFileKey);

impl age::Identity for KnownFileKey {
    fn unwrap_stanza(
        &self,
        _stanza: &Stanza,
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        Some(Ok(FileKey::new(Box::new(self.0 .0 .0))))
    }
}

/// A freshly made header (with the payload nonce at its end) and the payload key.
pub(crate) struct NewHeader {
    pub(crate) bytes: Vec<u8>,
    pub(crate) payload_key: PayloadKey,
    pub(crate) digest_key: DigestKey,
    pub(crate) metadata_key: PayloadKey,
}

pub(crate) fn new_header(recipients: Recipients<'_>) -> Result<NewHeader> {
    let age_recipients: Vec<Box<dyn age::Recipient>> = match recipients {
        Recipients::Vault { file, account } => {
            vec![Box::new(file.0.clone()), Box::new(account.0.clone())]
        }
        Recipients::Account(account) => vec![Box::new(account.0.clone())],
        Recipients::Passphrase {
            passphrase,
            work_factor,
        } => {
            let mut r = age::scrypt::Recipient::new(passphrase.0.clone());
            if let Some(log_n) = work_factor {
                r.set_work_factor(log_n);
            }
            vec![Box::new(r)]
        }
    };
    let file_key = RefCell::new(None);
    let capturing: Vec<CapturingRecipient<'_>> = age_recipients
        .iter()
        .map(|r| CapturingRecipient {
            inner: r.as_ref(),
            file_key: &file_key,
        })
        .collect();
    let encryptor =
        age::Encryptor::with_recipients(capturing.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| CryptoError::Backend(e.to_string()))?;
    let mut bytes = Vec::with_capacity(512);
    // age writes the header and the payload nonce here; we drop its stream writer
    // unused (it writes nothing on drop) and run the payload ourselves.
    drop(encryptor.wrap_output(&mut bytes)?);
    let file_key = file_key
        .into_inner()
        .ok_or_else(|| CryptoError::Backend("age did not wrap a file key".into()))?;
    let nonce = trailing_nonce(&bytes);
    Ok(NewHeader {
        payload_key: PayloadKey::derive(&file_key, &nonce),
        digest_key: DigestKey::derive(&file_key),
        metadata_key: PayloadKey::for_metadata(&file_key),
        bytes,
    })
}

/// A header that age parsed and authenticated.
pub(crate) struct OpenedHeader {
    /// Bytes of header plus payload nonce: where the payload starts.
    pub(crate) len: u64,
    pub(crate) payload_key: PayloadKey,
    pub(crate) digest_key: DigestKey,
    pub(crate) metadata_key: PayloadKey,
    /// The file key itself, for a caller that opens the file again.
    pub(crate) file_key: crate::keys::OpenedFileKey,
}

/// Reads exactly the header and payload nonce from `input`, leaving it at the first
/// payload byte. Uses age's buffered parser, the strict one.
pub(crate) fn open_header<R: BufRead>(input: &mut R, keys: &Keys) -> Result<OpenedHeader> {
    let seen = RefCell::new(Vec::with_capacity(512));
    let mut tee = Tee {
        inner: input,
        seen: &seen,
    };
    let max_work = keys.max_work_factor();
    let decryptor =
        age::Decryptor::new_buffered(&mut tee).map_err(|e| CryptoError::from_age(e, max_work))?;
    if !stanza_bodies_are_terminated(&seen.borrow()) {
        return Err(CryptoError::HeaderDamaged);
    }
    let identities = keys.to_age();
    let file_key = RefCell::new(None);
    let capturing: Vec<CapturingIdentity<'_>> = identities
        .iter()
        .map(|i| CapturingIdentity {
            inner: i.as_ref(),
            file_key: &file_key,
        })
        .collect();
    // Ok here means age found a key AND verified the header MAC with it.
    let stream = decryptor
        .decrypt(capturing.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| CryptoError::from_age(e, max_work))?;
    drop(stream);
    let file_key = file_key
        .into_inner()
        .ok_or_else(|| CryptoError::Backend("age accepted the header without a file key".into()))?;
    let seen = seen.into_inner();
    let nonce = trailing_nonce(&seen);
    Ok(OpenedHeader {
        len: seen.len() as u64,
        payload_key: PayloadKey::derive(&file_key, &nonce),
        digest_key: DigestKey::derive(&file_key),
        metadata_key: PayloadKey::for_metadata(&file_key),
        file_key: crate::keys::OpenedFileKey(file_key),
    })
}

/// The age spec ends every stanza body with a line shorter than 64 columns (possibly
/// empty), so a reader knows the body is complete. The age crate 0.12 accepts a stanza
/// with no body line at all, or one ending on a full line (CCTV `stanza_missing_body`,
/// `stanza_missing_final_line`); we refuse both.
fn stanza_bodies_are_terminated(header: &[u8]) -> bool {
    let mut last_body_line: Option<Option<usize>> = None; // None: not inside a stanza
    for line in header.split(|&b| b == b'\n').skip(1) {
        let is_stanza = line.starts_with(b"-> ");
        let is_mac = line.starts_with(b"---");
        if is_stanza || is_mac {
            if let Some(body) = last_body_line {
                if body.is_none_or(|len| len >= 64) {
                    return false;
                }
            }
            if is_mac {
                return true;
            }
            last_body_line = Some(None);
        } else if let Some(body) = last_body_line.as_mut() {
            *body = Some(line.len());
        }
    }
    // age already found the MAC line; not reaching it here means we misread.
    false
}

/// The first line of every binary age file.
const MAGIC_LINE: &[u8] = b"age-encryption.org/v1\n";

/// Where the payload starts in a binary age file that begins with `prefix`: the length
/// of its header and payload nonce, once `prefix` holds all of them (`None` before,
/// and for anything that does not start like a binary age file). Only the layout is
/// read, nothing is authenticated: that is [`crate::decrypt_resumed`]'s job when it is
/// handed these bytes.
pub fn age_header_len(prefix: &[u8]) -> Option<usize> {
    if !prefix.starts_with(MAGIC_LINE) {
        return None;
    }
    // Stanza lines start with "-> ", their bodies are base64: the first line starting
    // with "---" is the MAC line, the header's last.
    let mut line_start = 0;
    for line in prefix.split_inclusive(|&b| b == b'\n') {
        let end = line_start + line.len();
        if !line.ends_with(b"\n") || end > MAX_HEADER_BYTES {
            return None;
        }
        if line.starts_with(b"---") {
            let len = end + PAYLOAD_NONCE_SIZE;
            return (prefix.len() >= len).then_some(len);
        }
        line_start = end;
    }
    None
}

fn trailing_nonce(header_and_nonce: &[u8]) -> [u8; PAYLOAD_NONCE_SIZE] {
    let mut nonce = [0u8; PAYLOAD_NONCE_SIZE];
    nonce.copy_from_slice(&header_and_nonce[header_and_nonce.len() - PAYLOAD_NONCE_SIZE..]);
    nonce
}

/// Remembers what age consumes, so we learn the header's length and the nonce.
struct Tee<'a, R> {
    inner: &'a mut R,
    seen: &'a RefCell<Vec<u8>>,
}

impl<R: BufRead> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.inner.fill_buf()?[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Tee<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.seen.borrow().len() > MAX_HEADER_BYTES {
            // age reports this as a truncated, i.e. damaged, header.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "age header too large",
            ));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            self.seen
                .borrow_mut()
                .extend_from_slice(&buf[..amount.min(buf.len())]);
        }
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::age_header_len;
    use super::stanza_bodies_are_terminated as ok;

    #[test]
    fn header_length_is_found_once_the_nonce_is_in() {
        let header = b"age-encryption.org/v1\n-> X25519 abc\nAAAA\n--- mac\n";
        let mut file = header.to_vec();
        file.extend_from_slice(&[7u8; 16]);
        file.extend_from_slice(b"payload---\n");
        assert_eq!(age_header_len(&file), Some(header.len() + 16));
        assert_eq!(
            age_header_len(&file[..header.len() + 16]),
            Some(header.len() + 16)
        );
        assert_eq!(
            age_header_len(&file[..header.len() + 15]),
            None,
            "nonce cut"
        );
        assert_eq!(
            age_header_len(&file[..header.len() - 1]),
            None,
            "MAC line cut"
        );
        assert_eq!(
            age_header_len(b"-----BEGIN AGE ENCRYPTED FILE-----\n"),
            None
        );
        assert_eq!(age_header_len(b""), None);
    }

    #[test]
    fn stanza_bodies_must_end_with_a_short_line() {
        let full = "A".repeat(64);
        assert!(ok(b"age-encryption.org/v1\n-> X a\nAAAA\n--- mac\nNONCE"));
        assert!(ok(b"age-encryption.org/v1\n-> X a\n\n--- mac\n"));
        assert!(ok(format!(
            "age-encryption.org/v1\n-> X\n{full}\n\n--- m\n"
        )
        .as_bytes()));
        assert!(!ok(b"age-encryption.org/v1\n-> X a\n--- mac\n"));
        assert!(!ok(
            format!("age-encryption.org/v1\n-> X\n{full}\n--- m\n").as_bytes()
        ));
        assert!(!ok(b"age-encryption.org/v1\n-> X a\nAA\n"));
    }
}
