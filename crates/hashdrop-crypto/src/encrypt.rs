//! Streaming encryption: plaintext in, a standard age file out, with the plaintext's
//! SHA-256 computed from the same single read.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::digest::Digest32;
use crate::digest::DigestKey;
use crate::error::{CryptoError, Result};
use crate::hashing::{writable, HashWorker, PlainHasher, SharedBuf};
use crate::header::{new_header, open_header};
use crate::keys::{Keys, Recipients};
use crate::stream::{
    payload_len, ChunkCipher, PayloadKey, BATCH_PLAIN, BATCH_SEALED, CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE, TAG_SIZE,
};

/// What an encryption produced, besides the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptSummary {
    /// The keyed BLAKE3 digest of the plaintext (`docs/FORMAT.md`), what `--verify`
    /// checks for new uploads.
    pub keyed_digest: Digest32,
    /// Plaintext bytes read.
    pub plaintext_len: u64,
    /// Ciphertext bytes written (header included).
    pub ciphertext_len: u64,
}

/// An age file about to be written: its header is fixed (so its exact ciphertext length
/// is known before a byte of plaintext is read, which the upload slot needs).
pub struct Encryption {
    pub(crate) header: Vec<u8>,
    sealer: ChunkCipher,
    /// Kept for the parallel path, where every thread needs its own sealer.
    pub(crate) payload_key: PayloadKey,
    pub(crate) digest_key: DigestKey,
    pub(crate) metadata_key: PayloadKey,
    pub(crate) expected_len: Option<u64>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("header_len", &self.header.len())
            .field("expected_len", &self.expected_len)
            .finish_non_exhaustive()
    }
}

impl Encryption {
    /// Prepares an age file to `recipients`. For passphrase mode this runs scrypt.
    pub fn new(recipients: Recipients<'_>) -> Result<Self> {
        let header = new_header(recipients)?;
        Ok(Self {
            sealer: ChunkCipher::sealer(&header.payload_key)?,
            header: header.bytes,
            payload_key: header.payload_key,
            digest_key: header.digest_key,
            metadata_key: header.metadata_key,
            expected_len: None,
        })
    }

    /// The encryption a `header` (payload nonce included) was made for, recovered with
    /// keys that open it: what a resumed upload uses to seal its remaining parts
    /// exactly as the first run would have. The header bytes must be the whole header
    /// and nothing more.
    pub fn reopen(header: &[u8], keys: &Keys) -> Result<Self> {
        let opened = open_header(&mut &header[..], keys)?;
        if opened.len != header.len() as u64 {
            return Err(CryptoError::HeaderDamaged);
        }
        Ok(Self {
            sealer: ChunkCipher::sealer(&opened.payload_key)?,
            header: header.to_vec(),
            payload_key: opened.payload_key,
            digest_key: opened.digest_key,
            metadata_key: opened.metadata_key,
            expected_len: None,
        })
    }

    /// A second encryption with the same header and keys, so tests can compare the
    /// serial and the parallel output byte for byte.
    #[cfg(test)]
    pub(crate) fn duplicate(&self) -> Result<Self> {
        Ok(Self {
            header: self.header.clone(),
            sealer: ChunkCipher::sealer(&self.payload_key)?,
            payload_key: self.payload_key.clone(),
            digest_key: self.digest_key.clone(),
            metadata_key: self.metadata_key.clone(),
            expected_len: self.expected_len,
        })
    }

    /// Insists that the plaintext is exactly `len` bytes: a file that grows or shrinks
    /// while it is being read fails with [`CryptoError::LengthMismatch`] instead of
    /// producing a ciphertext whose length differs from what was announced.
    pub fn expect_plaintext_len(mut self, len: u64) -> Self {
        self.expected_len = Some(len);
        self
    }

    /// Bytes of the age header, payload nonce included.
    pub fn header_len(&self) -> u64 {
        self.header.len() as u64
    }

    /// Exact size of the age file for a plaintext of `plaintext_len` bytes.
    pub fn ciphertext_len(&self, plaintext_len: u64) -> u64 {
        self.header_len() + payload_len(plaintext_len)
    }

    /// The header to write first, and the sealing state of the payload after it.
    fn into_sealing(self) -> (Vec<u8>, SealState) {
        let state = SealState::new(
            self.sealer,
            self.digest_key.whole_file(),
            self.header.len() as u64,
            self.expected_len,
        );
        (self.header, state)
    }

    /// Encrypts all of `input` into `output`, hashing the plaintext on the way.
    pub fn encrypt<R: Read, W: Write>(self, input: R, mut output: W) -> Result<EncryptSummary> {
        let (header, mut state) = self.into_sealing();
        let mut input = Lookahead::new(input);
        output.write_all(&header)?;
        loop {
            let mut plain = state.hasher.buffer();
            let n = input.fill(writable(&mut plain))?;
            let last = n < plain.len() || input.at_eof()?;
            let sealed = state.seal(plain, n, last)?;
            output.write_all(sealed)?;
            if last {
                break;
            }
        }
        output.flush()?;
        state.finish()
    }

    /// Encrypts an async reader as a stream of ciphertext pieces, ready to be a
    /// streaming HTTP request body (e.g. `reqwest::Body::wrap_stream`). The summary is
    /// available from [`EncryptingBody::summary`] once the stream has ended.
    ///
    /// Sealing and the hand-off to the hashing thread run inline in `poll_next`,
    /// about a quarter of a millisecond per 256 KiB piece: fine for a client, not for a
    /// server task.
    pub fn into_body<R>(self, input: R) -> EncryptingBody
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let summary = Arc::new(OnceLock::new());
        let (header, seal) = self.into_sealing();
        let state = BodyState {
            seal: Some(seal),
            input,
            lookahead: None,
            header: Some(Bytes::from(header)),
            summary: Arc::clone(&summary),
        };
        let stream = futures_util::stream::try_unfold(state, |mut state| async move {
            match state.next_piece().await {
                Ok(Some(piece)) => Ok(Some((piece, state))),
                Ok(None) => Ok(None),
                Err(e) => Err(io::Error::other(e)),
            }
        });
        EncryptingBody {
            inner: Box::pin(stream),
            summary,
        }
    }
}

/// Encrypts `input` to `recipients` into `output` in one pass.
pub fn encrypt<R: Read, W: Write>(
    input: R,
    output: W,
    recipients: Recipients<'_>,
) -> Result<EncryptSummary> {
    Encryption::new(recipients)?.encrypt(input, output)
}

/// The sealing half shared by the blocking and the async paths.
struct SealState {
    sealer: ChunkCipher,
    hasher: HashWorker,
    sealed: Vec<u8>,
    counter: u64,
    written: u64,
    expected_len: Option<u64>,
}

impl SealState {
    fn new(
        sealer: ChunkCipher,
        digest: PlainHasher,
        header_len: u64,
        expected_len: Option<u64>,
    ) -> Self {
        Self {
            sealer,
            hasher: HashWorker::start(digest, 2, BATCH_PLAIN),
            sealed: Vec::with_capacity(BATCH_SEALED),
            counter: 0,
            written: header_len,
            expected_len,
        }
    }

    /// Seals `plain[..n]` (a whole number of chunks unless `last`) and returns the
    /// ciphertext. The plaintext buffer goes to the hasher before the AEAD starts, so
    /// the two run side by side on the same bytes.
    fn seal(&mut self, plain: SharedBuf, n: usize, last: bool) -> Result<&[u8]> {
        let so_far = self.hasher.hashed() + n as u64;
        if let Some(expected) = self.expected_len {
            if so_far > expected || (last && so_far != expected) {
                return Err(CryptoError::LengthMismatch {
                    expected,
                    actual: so_far,
                });
            }
        }
        self.hasher.submit(&plain, n);
        // An empty plaintext is still one (empty, final) chunk.
        let chunks = n.div_ceil(CHUNK_SIZE).max(1);
        self.sealed.resize(n + chunks * TAG_SIZE, 0);
        for i in 0..chunks {
            let from = i * CHUNK_SIZE;
            let chunk = &plain[from..n.min(from + CHUNK_SIZE)];
            let at = i * ENCRYPTED_CHUNK_SIZE;
            let out = &mut self.sealed[at..at + chunk.len() + TAG_SIZE];
            self.sealer
                .seal(self.counter, last && i + 1 == chunks, chunk, out)?;
            self.counter += 1;
        }
        self.written += self.sealed.len() as u64;
        Ok(&self.sealed)
    }

    fn finish(self) -> Result<EncryptSummary> {
        let plaintext_len = self.hasher.hashed();
        Ok(EncryptSummary {
            keyed_digest: self.hasher.finish(),
            plaintext_len,
            ciphertext_len: self.written,
        })
    }
}

/// An age file being produced as a `Stream` of `Bytes`.
pub struct EncryptingBody {
    inner: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    summary: Arc<OnceLock<EncryptSummary>>,
}

impl std::fmt::Debug for EncryptingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingBody")
            .field("summary", &self.summary.get())
            .finish_non_exhaustive()
    }
}

impl EncryptingBody {
    /// A handle that yields the summary once the stream has been driven to its end.
    pub fn summary_handle(&self) -> SummaryHandle {
        SummaryHandle(Arc::clone(&self.summary))
    }
}

impl Stream for EncryptingBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Where the summary of an [`EncryptingBody`] appears when it is finished.
#[derive(Debug, Clone)]
pub struct SummaryHandle(Arc<OnceLock<EncryptSummary>>);

impl SummaryHandle {
    /// The summary, or `None` while the body has not been fully produced (or failed).
    pub fn get(&self) -> Option<EncryptSummary> {
        self.0.get().copied()
    }
}

struct BodyState<R> {
    /// `None` once the final piece has been produced.
    seal: Option<SealState>,
    input: R,
    lookahead: Option<u8>,
    header: Option<Bytes>,
    summary: Arc<OnceLock<EncryptSummary>>,
}

impl<R: AsyncRead + Unpin> BodyState<R> {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        if let Some(header) = self.header.take() {
            return Ok(Some(header));
        }
        let Some(seal) = self.seal.as_mut() else {
            return Ok(None);
        };
        let mut plain = seal.hasher.buffer();
        let target = writable(&mut plain);
        let mut n = 0;
        if let Some(b) = self.lookahead.take() {
            target[0] = b;
            n = 1;
        }
        while n < target.len() {
            let got = self.input.read(&mut target[n..]).await?;
            if got == 0 {
                break;
            }
            n += got;
        }
        let mut last = n < target.len();
        if !last {
            let mut one = [0u8; 1];
            if self.input.read(&mut one).await? == 0 {
                last = true;
            } else {
                self.lookahead = Some(one[0]);
            }
        }
        let piece = Bytes::copy_from_slice(seal.seal(plain, n, last)?);
        if last {
            if let Some(seal) = self.seal.take() {
                let _ = self.summary.set(seal.finish()?);
            }
        }
        Ok(Some(piece))
    }
}

/// A reader that can tell whether it is at the end without losing a byte.
pub(crate) struct Lookahead<R> {
    inner: R,
    peeked: Option<u8>,
}

impl<R: Read> Lookahead<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            peeked: None,
        }
    }

    /// Reads until `buf` is full or the input ends; returns the bytes read.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.fill_until_error(buf) {
            (n, None) => Ok(n),
            (_, Some(e)) => Err(e),
        }
    }

    /// Like [`Self::fill`], but also reports how much was read before an error.
    pub(crate) fn fill_until_error(&mut self, buf: &mut [u8]) -> (usize, Option<io::Error>) {
        let mut n = 0;
        if buf.is_empty() {
            return (0, None);
        }
        if let Some(b) = self.peeked.take() {
            buf[0] = b;
            n = 1;
        }
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(got) => n += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (n, Some(e)),
            }
        }
        (n, None)
    }

    /// Whether no byte follows.
    pub(crate) fn at_eof(&mut self) -> io::Result<bool> {
        if self.peeked.is_some() {
            return Ok(false);
        }
        let mut one = [0u8; 1];
        loop {
            match self.inner.read(&mut one) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    self.peeked = Some(one[0]);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
