//! Streaming and seekable decryption of age files.
//!
//! Plaintext is released one authenticated chunk at a time: whatever reaches the writer
//! has passed its Poly1305 check, and a file cut short is reported as such. The CLI
//! writes to a hidden partial file and renames it only after `decrypt` returns `Ok`;
//! when the download stops short it may keep that file and continue it with
//! [`crate::decrypt_resumed`].

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

use crate::digest::Digest32;
use crate::encrypt::Lookahead;
use crate::error::{CryptoError, Result};
use crate::hashing::{writable, HashWorker, PlainHasher};
use crate::header::{open_header, OpenedHeader};
use crate::keys::Keys;
use crate::stream::{
    plaintext_len, ChunkCipher, ChunkKind, BATCH_PLAIN, BATCH_SEALED, CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE, TAG_SIZE,
};
use sha2::{Digest, Sha256};

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Which digest of the plaintext a decryption computes on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlainDigest {
    /// The keyed BLAKE3 digest new uploads record (`docs/FORMAT.md`).
    #[default]
    Keyed,
    /// SHA-256, what uploads before the keyed digest recorded.
    Sha256,
}

/// What a decryption produced, besides the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptSummary {
    /// The digest of the plaintext asked for ([`PlainDigest`]).
    pub plaintext_digest: Digest32,
    /// Plaintext bytes written.
    pub plaintext_len: u64,
}

/// Decrypts an age file (binary or ASCII-armored) from `input` into `output`.
///
/// Plaintext reaches `output` only in authenticated chunks; on error, what was written
/// is a prefix of the true plaintext and the error says where it stopped.
/// The summary carries the keyed digest; [`decrypt_with`] picks another.
pub fn decrypt<R: Read, W: Write>(input: R, output: W, keys: &Keys) -> Result<DecryptSummary> {
    decrypt_with(input, output, keys, PlainDigest::Keyed)
}

/// [`decrypt`], computing the `digest` asked for.
pub fn decrypt_with<R: Read, W: Write>(
    input: R,
    output: W,
    keys: &Keys,
    digest: PlainDigest,
) -> Result<DecryptSummary> {
    let mut input = BufReader::with_capacity(16 * 1024, input);
    if skip_to_armor(&mut input)? {
        let mut dearmored = age::armor::ArmoredReader::new(input);
        decrypt_binary(&mut dearmored, output, keys, digest).map_err(armor_error)
    } else {
        decrypt_binary(&mut input, output, keys, digest)
    }
}

/// Whether the input is ASCII-armored; whitespace before the armor is skipped, as the
/// age spec allows. Binary input is left untouched.
fn skip_to_armor<R: BufRead>(input: &mut R) -> io::Result<bool> {
    let head = input.fill_buf()?;
    let blank = head.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &head[blank..];
    let n = rest.len().min(ARMOR_BEGIN.len());
    let armored = n > 0 && rest[..n] == ARMOR_BEGIN[..n];
    if armored {
        input.consume(blank);
    }
    Ok(armored)
}

/// The armor decoder reports malformed armor as I/O errors of kind `InvalidData`.
fn armor_error(e: CryptoError) -> CryptoError {
    match e {
        CryptoError::Io(io) if io.kind() == io::ErrorKind::InvalidData => CryptoError::ArmorDamaged,
        other => other,
    }
}

fn decrypt_binary<R: BufRead, W: Write>(
    input: &mut R,
    output: W,
    keys: &Keys,
    digest: PlainDigest,
) -> Result<DecryptSummary> {
    let header = open_header(input, keys)?;
    let hasher = start_digest(&header, digest);
    decrypt_payload(input, output, &header, hasher, 0)
}

/// The thread computing the `digest` asked for over the plaintext of `header`'s file.
pub(crate) fn start_digest(header: &OpenedHeader, digest: PlainDigest) -> HashWorker {
    let digest = match digest {
        PlainDigest::Keyed => header.digest_key.whole_file(),
        PlainDigest::Sha256 => PlainHasher::Sha256(Sha256::new()),
    };
    HashWorker::start(digest, 2, BATCH_PLAIN)
}

/// Opens the STREAM chunks of `input`, the first being chunk number `first_chunk`, into
/// `output`, hashing the plaintext with `hasher` (which may already hold the plaintext
/// of the chunks before). The summary covers everything `hasher` saw.
pub(crate) fn decrypt_payload<R: Read, W: Write>(
    input: R,
    mut output: W,
    header: &OpenedHeader,
    mut hasher: HashWorker,
    first_chunk: u64,
) -> Result<DecryptSummary> {
    let mut opener = ChunkCipher::opener(&header.payload_key)?;
    let mut input = Lookahead::new(input);
    let mut sealed = vec![0u8; BATCH_SEALED];
    let mut counter = first_chunk;
    loop {
        // A read error still lets us release the whole chunks read before it.
        let (n, read_error) = input.fill_until_error(&mut sealed);
        let at_eof = match &read_error {
            Some(_) => false,
            None => n < sealed.len() || input.at_eof()?,
        };
        let mut plain = hasher.buffer();
        let opened = open_batch(
            &mut opener,
            &sealed[..n],
            writable(&mut plain),
            &mut counter,
            at_eof,
        );
        // Hashing overlaps the write of the same (authenticated) bytes.
        hasher.submit(&plain, opened.plain_len);
        output.write_all(&plain[..opened.plain_len])?;
        drop(plain);
        if let Some(e) = opened.error {
            output.flush()?;
            return Err(e);
        }
        if let Some(e) = read_error {
            output.flush()?;
            return Err(e.into());
        }
        if at_eof {
            if !opened.saw_final {
                output.flush()?;
                return Err(CryptoError::PayloadTruncated { chunk: counter });
            }
            break;
        }
    }
    output.flush()?;
    let plaintext_len = hasher.hashed();
    Ok(DecryptSummary {
        plaintext_digest: hasher.finish(),
        plaintext_len,
    })
}

struct BatchOutcome {
    plain_len: usize,
    saw_final: bool,
    error: Option<CryptoError>,
}

/// Opens the chunks of `batch` into `plain`. `at_eof` says nothing follows the batch;
/// without it a trailing partial chunk is left alone (it was cut by a read error).
fn open_batch(
    opener: &mut ChunkCipher,
    batch: &[u8],
    plain: &mut [u8],
    counter: &mut u64,
    at_eof: bool,
) -> BatchOutcome {
    let mut out = BatchOutcome {
        plain_len: 0,
        saw_final: false,
        error: None,
    };
    for (i, sealed) in batch.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
        if sealed.len() < ENCRYPTED_CHUNK_SIZE && !at_eof {
            break;
        }
        let len = sealed.len().saturating_sub(TAG_SIZE);
        let target = &mut plain[out.plain_len..out.plain_len + len];
        match opener.open_chunk(*counter, sealed, target) {
            Ok(kind) => {
                out.plain_len += len;
                *counter += 1;
                if kind == ChunkKind::Final {
                    let more_follows = (i + 1) * ENCRYPTED_CHUNK_SIZE < batch.len() || !at_eof;
                    if more_follows {
                        out.error = Some(CryptoError::PayloadDamaged { chunk: *counter });
                    } else {
                        out.saw_final = true;
                    }
                    return out;
                }
            }
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    out
}

/// Random access to the plaintext of a binary age file, for HTTP Range requests and
/// resumed downloads: only the chunks covering the requested bytes are read and
/// authenticated.
pub struct SeekableDecryptor<R> {
    inner: R,
    opener: ChunkCipher,
    payload_start: u64,
    payload_len: u64,
    plaintext_len: u64,
    pos: u64,
    /// The most recently opened chunk: (index, plaintext).
    cached: Option<(u64, Vec<u8>)>,
    sealed: Vec<u8>,
}

impl<R> std::fmt::Debug for SeekableDecryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeekableDecryptor")
            .field("payload_start", &self.payload_start)
            .field("plaintext_len", &self.plaintext_len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> SeekableDecryptor<R> {
    /// Opens the header (authenticating it) and sizes the payload.
    pub fn new(mut inner: R, keys: &Keys) -> Result<Self> {
        inner.seek(SeekFrom::Start(0))?;
        let header = open_header(&mut BufReader::new(&mut inner), keys)?;
        let end = inner.seek(SeekFrom::End(0))?;
        let payload_len = end - header.len;
        let plaintext_len = plaintext_len(payload_len).ok_or(if payload_len < TAG_SIZE as u64 {
            CryptoError::PayloadTruncated { chunk: 0 }
        } else {
            CryptoError::PayloadDamaged {
                chunk: payload_len / ENCRYPTED_CHUNK_SIZE as u64,
            }
        })?;
        Ok(Self {
            opener: ChunkCipher::opener(&header.payload_key)?,
            inner,
            payload_start: header.len,
            payload_len,
            plaintext_len,
            pos: 0,
            cached: None,
            sealed: Vec::with_capacity(ENCRYPTED_CHUNK_SIZE),
        })
    }

    /// Length of the whole plaintext.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Writes plaintext bytes `start..end` to `output`.
    pub fn read_range<W: Write>(&mut self, start: u64, end: u64, mut output: W) -> Result<()> {
        if start > end || end > self.plaintext_len {
            return Err(CryptoError::RangeOutOfBounds {
                start,
                end,
                len: self.plaintext_len,
            });
        }
        self.pos = start;
        while self.pos < end {
            let chunk = self.pos / CHUNK_SIZE as u64;
            let offset = (self.pos % CHUNK_SIZE as u64) as usize;
            let remaining = (end - self.pos) as usize;
            let plain = self.chunk(chunk)?;
            let take = (plain.len() - offset).min(remaining);
            output.write_all(&plain[offset..offset + take])?;
            self.pos += take as u64;
        }
        Ok(())
    }

    fn chunk(&mut self, index: u64) -> Result<&[u8]> {
        if self.cached.as_ref().is_none_or(|(i, _)| *i != index) {
            let enc = ENCRYPTED_CHUNK_SIZE as u64;
            let last_index = (self.payload_len - 1) / enc;
            let from = index * enc;
            let len = (self.payload_len - from).min(enc) as usize;
            self.sealed.resize(len, 0);
            self.inner
                .seek(SeekFrom::Start(self.payload_start + from))?;
            self.inner
                .read_exact(&mut self.sealed)
                .map_err(|e| match e.kind() {
                    // The file shrank under us.
                    io::ErrorKind::UnexpectedEof => CryptoError::PayloadTruncated { chunk: index },
                    _ => CryptoError::Io(e),
                })?;
            let mut plain = self.cached.take().map(|(_, b)| b).unwrap_or_default();
            plain.resize(len - TAG_SIZE, 0);
            let kind = self.opener.open_chunk(index, &self.sealed, &mut plain)?;
            match (kind, index == last_index) {
                (ChunkKind::NonFinal, true) => {
                    return Err(CryptoError::PayloadTruncated { chunk: index + 1 })
                }
                (ChunkKind::Final, false) => {
                    return Err(CryptoError::PayloadDamaged { chunk: index + 1 })
                }
                _ => {}
            }
            self.cached = Some((index, plain));
        }
        Ok(&self.cached.as_ref().expect("filled above").1)
    }
}

impl<R: Read + Seek> Read for SeekableDecryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.plaintext_len || out.is_empty() {
            return Ok(0);
        }
        let chunk = self.pos / CHUNK_SIZE as u64;
        let offset = (self.pos % CHUNK_SIZE as u64) as usize;
        let plain = self.chunk(chunk).map_err(io::Error::other)?;
        let take = (plain.len() - offset).min(out.len());
        out[..take].copy_from_slice(&plain[offset..offset + take]);
        self.pos += take as u64;
        Ok(take)
    }
}

impl<R: Read + Seek> Seek for SeekableDecryptor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.plaintext_len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the plaintext",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}
