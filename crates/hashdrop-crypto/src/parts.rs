//! Parallel encryption and decryption of a plaintext held in memory (or any slice, such
//! as a memory-mapped file), cut into parts.
//!
//! A part is `part_size` bytes of plaintext, a power of two of at least one 64 KiB STREAM
//! chunk, so its ciphertext is a run of whole STREAM chunks (the age header in front of
//! the first part) and its plaintext a whole BLAKE3 subtree. Every part is sealed (or
//! opened) and hashed on its own, in one pass over its bytes, on as many threads as the
//! machine has cores; the parts together are exactly the age file the serial
//! [`Encryption::encrypt`] writes for the same key and nonce, and its keyed digest is
//! the one described in [`crate::digest`].
//!
//! The same per-part functions ([`Encryption::seal_part`], [`PartDecryption::open_part`])
//! serve a multipart upload or download that moves one part at a time.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;

use zeroize::Zeroize;

use crate::digest::{check, check_part_size, Digest32, DigestKey};
use crate::encrypt::Encryption;
use crate::error::{CryptoError, Result};
use crate::header::open_header;
use crate::keys::Keys;
use crate::stream::{
    payload_len, plaintext_len, ChunkCipher, PayloadKey, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, TAG_SIZE,
};

/// The part size used when the caller has no reason to pick another: 8 MiB, a power of
/// two above S3's 5 MiB minimum part size.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

const CHUNK: u64 = CHUNK_SIZE as u64;
const SEALED_CHUNK: u64 = ENCRYPTED_CHUNK_SIZE as u64;

/// Where each part of an age file lies, in the plaintext and in the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLayout {
    header_len: u64,
    plaintext_len: u64,
    part_size: u64,
}

impl PartLayout {
    /// The layout of a file whose header (payload nonce included) is `header_len` bytes
    /// and whose plaintext is `plaintext_len` bytes, cut into parts of `part_size`
    /// plaintext bytes (a power of two, at least 64 KiB).
    pub fn new(header_len: u64, plaintext_len: u64, part_size: u64) -> Result<Self> {
        check_part_size(part_size)?;
        Ok(Self {
            header_len,
            plaintext_len,
            part_size,
        })
    }

    /// Plaintext bytes per part (the last part may be shorter).
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Plaintext bytes of the whole file.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Bytes of the age header, payload nonce included.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Bytes of the whole age file.
    pub fn ciphertext_len(&self) -> u64 {
        self.header_len + payload_len(self.plaintext_len)
    }

    /// Number of parts; an empty file still has one (its header and one empty chunk).
    pub fn part_count(&self) -> u64 {
        self.plaintext_len.div_ceil(self.part_size).max(1)
    }

    /// The plaintext bytes of part `index`.
    pub fn plaintext_range(&self, index: u64) -> Range<u64> {
        let start = (index * self.part_size).min(self.plaintext_len);
        start..(start + self.part_size).min(self.plaintext_len)
    }

    /// The ciphertext bytes of part `index`; the first part starts with the header.
    pub fn ciphertext_range(&self, index: u64) -> Range<u64> {
        let plain = self.plaintext_range(index);
        let start = if index == 0 {
            0
        } else {
            self.header_len + plain.start / CHUNK * SEALED_CHUNK
        };
        let end = if index + 1 >= self.part_count() {
            self.ciphertext_len()
        } else {
            self.header_len + plain.end / CHUNK * SEALED_CHUNK
        };
        start..end
    }

    fn last_chunk(&self) -> u64 {
        self.plaintext_len.div_ceil(CHUNK).max(1) - 1
    }

    fn check_part(&self, index: u64, plain_len: usize, sealed_len: usize) -> Result<()> {
        if index >= self.part_count() {
            return Err(CryptoError::RangeOutOfBounds {
                start: index,
                end: index + 1,
                len: self.part_count(),
            });
        }
        let plain = self.plaintext_range(index);
        let sealed = self.ciphertext_range(index);
        for (expected, actual) in [
            (plain.end - plain.start, plain_len),
            (sealed.end - sealed.start, sealed_len),
        ] {
            if expected != actual as u64 {
                return Err(CryptoError::BufferLength {
                    expected,
                    actual: actual as u64,
                });
            }
        }
        Ok(())
    }
}

/// What a parallel encryption or decryption produced besides its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsSummary {
    /// The file's keyed digest (keyed BLAKE3 of the plaintext; see `docs/FORMAT.md`).
    pub keyed_digest: Digest32,
    /// Each part's digest, in order: what a resumed upload compares.
    pub part_digests: Vec<Digest32>,
    /// How the file was cut.
    pub layout: PartLayout,
}

impl PartsSummary {
    /// Fails with [`CryptoError::DigestMismatch`] unless the keyed digest is `expected`
    /// (compared in constant time).
    pub fn verify(&self, expected: &Digest32) -> Result<()> {
        check(&self.keyed_digest, expected)
    }
}

fn summarize(digest_key: &DigestKey, layout: PartLayout, parts: Vec<Digest32>) -> PartsSummary {
    PartsSummary {
        keyed_digest: digest_key.merge(&parts, layout.part_size, layout.plaintext_len),
        part_digests: parts,
        layout,
    }
}

fn merge_checked(key: &DigestKey, layout: &PartLayout, parts: &[Digest32]) -> Result<Digest32> {
    if parts.len() as u64 != layout.part_count() {
        return Err(CryptoError::BufferLength {
            expected: layout.part_count(),
            actual: parts.len() as u64,
        });
    }
    Ok(key.merge(parts, layout.part_size, layout.plaintext_len))
}

impl Encryption {
    /// The layout of this file for a plaintext of `plaintext_len` bytes.
    pub fn part_layout(&self, plaintext_len: u64, part_size: u64) -> Result<PartLayout> {
        PartLayout::new(self.header.len() as u64, plaintext_len, part_size)
    }

    /// Encrypts part `index` of `layout` (`plain` is its plaintext, `sealed` receives its
    /// ciphertext, header included for part 0; both exactly the part's size) and returns
    /// the part's digest, computed in the same pass.
    pub fn seal_part(
        &self,
        layout: &PartLayout,
        index: u64,
        plain: &[u8],
        sealed: &mut [u8],
    ) -> Result<Digest32> {
        self.check_layout(layout)?;
        layout.check_part(index, plain.len(), sealed.len())?;
        let sealed = if index == 0 {
            let (header, rest) = sealed.split_at_mut(self.header.len());
            header.copy_from_slice(&self.header);
            rest
        } else {
            sealed
        };
        let mut sealer = ChunkCipher::sealer(&self.payload_key)?;
        let start = layout.plaintext_range(index).start;
        let mut hasher = self.digest_key.part_hasher(layout.part_count(), start);
        if plain.is_empty() {
            // Only an empty file has an empty part: one empty, final chunk.
            sealer.seal(0, true, plain, sealed)?;
        }
        let last = layout.last_chunk();
        for (i, (p, s)) in plain
            .chunks(CHUNK_SIZE)
            .zip(sealed.chunks_mut(ENCRYPTED_CHUNK_SIZE))
            .enumerate()
        {
            let counter = start / CHUNK + i as u64;
            sealer.seal(counter, counter == last, p, s)?;
            hasher.update(p);
        }
        Ok(hasher.finish())
    }

    /// [`Self::seal_part`] without a second buffer: `buf` is exactly the part's sealed
    /// size; `read(offset, slot)` fills `slot` with the plaintext at `offset` of the
    /// file, one chunk at a time, each read straight into the place where that chunk
    /// is then hashed and sealed in place. On return `buf` holds the part's ciphertext
    /// (header included for part 0). Reading chunk by chunk rather than the whole part
    /// at once saves a pass over the part (nothing is moved) and hashes and seals each
    /// chunk while the read has just brought it into the cache. An error of `read`
    /// stops the part (as [`CryptoError::Io`]).
    pub fn seal_part_reading(
        &self,
        layout: &PartLayout,
        index: u64,
        buf: &mut [u8],
        mut read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<Digest32> {
        self.check_layout(layout)?;
        let plain_range = layout.plaintext_range(index);
        let plain_len = (plain_range.end - plain_range.start) as usize;
        layout.check_part(index, plain_len, buf.len())?;
        let mut to = if index == 0 {
            buf[..self.header.len()].copy_from_slice(&self.header);
            self.header.len()
        } else {
            0
        };
        let mut sealer = ChunkCipher::sealer(&self.payload_key)?;
        let mut hasher = self
            .digest_key
            .part_hasher(layout.part_count(), plain_range.start);
        let first_counter = plain_range.start / CHUNK;
        let last = layout.last_chunk();
        let mut done = 0usize;
        let mut i = 0u64;
        loop {
            let n = (plain_len - done).min(CHUNK_SIZE);
            read(plain_range.start + done as u64, &mut buf[to..to + n])?;
            hasher.update(&buf[to..to + n]);
            let counter = first_counter + i;
            sealer.seal_in_place(counter, counter == last, &mut buf[to..to + n + TAG_SIZE])?;
            done += n;
            to += n + TAG_SIZE;
            i += 1;
            if done == plain_len {
                break;
            }
        }
        Ok(hasher.finish())
    }

    /// The digest of part `index` without encrypting it: what a resumed upload computes
    /// to check that a part it already sent is unchanged.
    pub fn part_digest(&self, layout: &PartLayout, index: u64, plain: &[u8]) -> Result<Digest32> {
        self.check_layout(layout)?;
        let sealed = layout.ciphertext_range(index);
        layout.check_part(index, plain.len(), (sealed.end - sealed.start) as usize)?;
        let start = layout.plaintext_range(index).start;
        let mut hasher = self.digest_key.part_hasher(layout.part_count(), start);
        hasher.update(plain);
        Ok(hasher.finish())
    }

    /// Encrypts all of `plaintext` into `sealed` (exactly [`Self::ciphertext_len`] bytes),
    /// cut into parts of `part_size` bytes sealed and hashed on all cores. The output is
    /// byte for byte what [`Self::encrypt`] writes.
    pub fn encrypt_parts(
        self,
        plaintext: &[u8],
        part_size: u64,
        sealed: &mut [u8],
    ) -> Result<PartsSummary> {
        let len = plaintext.len() as u64;
        if let Some(expected) = self.expected_len.filter(|&e| e != len) {
            return Err(CryptoError::LengthMismatch {
                expected,
                actual: len,
            });
        }
        let layout = self.part_layout(len, part_size)?;
        let jobs = split_parts(&layout, plaintext, sealed)?;
        let digests = in_parallel(jobs, |(index, plain, out)| {
            self.seal_part(&layout, index, plain, out)
        })?;
        Ok(summarize(&self.digest_key, layout, digests))
    }

    /// The file's keyed digest from its part digests (in order, one per part of
    /// `layout`), for callers that seal the parts one at a time with
    /// [`Self::seal_part`].
    pub fn keyed_digest(&self, layout: &PartLayout, part_digests: &[Digest32]) -> Result<Digest32> {
        self.check_layout(layout)?;
        merge_checked(&self.digest_key, layout, part_digests)
    }

    /// [`Self::encrypt_parts`] into a new buffer.
    pub fn encrypt_parts_to_vec(
        self,
        plaintext: &[u8],
        part_size: u64,
    ) -> Result<(Vec<u8>, PartsSummary)> {
        let mut sealed = vec![0u8; self.ciphertext_len(plaintext.len() as u64) as usize];
        let summary = self.encrypt_parts(plaintext, part_size, &mut sealed)?;
        Ok((sealed, summary))
    }

    fn check_layout(&self, layout: &PartLayout) -> Result<()> {
        if layout.header_len == self.header.len() as u64 {
            Ok(())
        } else {
            Err(CryptoError::BufferLength {
                expected: self.header.len() as u64,
                actual: layout.header_len,
            })
        }
    }
}

/// An age file being decrypted part by part: its header is open, its size known.
pub struct PartDecryption {
    /// The authenticated header (payload nonce included), which part 0 must start with.
    header: Vec<u8>,
    payload_key: PayloadKey,
    digest_key: DigestKey,
    layout: PartLayout,
}

impl std::fmt::Debug for PartDecryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartDecryption")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl PartDecryption {
    /// Opens (and authenticates) the header at the start of `prefix` — the whole file,
    /// or any prefix of it that holds the header — of a binary age file of
    /// `ciphertext_len` bytes, to be cut into parts of `part_size` plaintext bytes.
    pub fn new(prefix: &[u8], ciphertext_len: u64, keys: &Keys, part_size: u64) -> Result<Self> {
        check_part_size(part_size)?;
        let header = open_header(&mut &prefix[..], keys)?;
        let header_bytes = prefix[..header.len as usize].to_vec();
        let payload = ciphertext_len
            .checked_sub(header.len)
            .ok_or(CryptoError::PayloadTruncated { chunk: 0 })?;
        let plain_len = plaintext_len(payload).ok_or(if payload < TAG_SIZE as u64 {
            CryptoError::PayloadTruncated { chunk: 0 }
        } else {
            CryptoError::PayloadDamaged {
                chunk: payload / SEALED_CHUNK,
            }
        })?;
        Ok(Self {
            header: header_bytes,
            layout: PartLayout::new(header.len, plain_len, part_size)?,
            payload_key: header.payload_key,
            digest_key: header.digest_key,
        })
    }

    /// How the file is cut; `layout().plaintext_len()` is the size of the output.
    pub fn layout(&self) -> &PartLayout {
        &self.layout
    }

    /// The file's keyed digest from its part digests (in order, one per part), for
    /// callers that open the parts one at a time with [`Self::open_part`].
    pub fn keyed_digest(&self, part_digests: &[Digest32]) -> Result<Digest32> {
        merge_checked(&self.digest_key, &self.layout, part_digests)
    }

    /// Authenticates and decrypts part `index` (`sealed`, header included for part 0,
    /// which must be the header given to [`Self::new`]) into `plain`, and returns the
    /// part's digest. On failure `plain` is wiped.
    pub fn open_part(&self, index: u64, sealed: &[u8], plain: &mut [u8]) -> Result<Digest32> {
        self.layout.check_part(index, plain.len(), sealed.len())?;
        let result = self.open_part_unchecked(index, sealed, plain);
        if result.is_err() {
            plain.zeroize();
        }
        result
    }

    fn open_part_unchecked(&self, index: u64, sealed: &[u8], plain: &mut [u8]) -> Result<Digest32> {
        let layout = &self.layout;
        let sealed = if index == 0 {
            let (header, rest) = sealed.split_at(layout.header_len as usize);
            // The keys come from the header given to `new`; part 0 must carry that one.
            if header != self.header.as_slice() {
                return Err(CryptoError::HeaderDamaged);
            }
            rest
        } else {
            sealed
        };
        let mut opener = ChunkCipher::opener(&self.payload_key)?;
        let start = layout.plaintext_range(index).start;
        let mut hasher = self.digest_key.part_hasher(layout.part_count(), start);
        let last = layout.last_chunk();
        let mut plain_chunks = plain.chunks_mut(CHUNK_SIZE);
        for (i, s) in sealed.chunks(ENCRYPTED_CHUNK_SIZE).enumerate() {
            let counter = start / CHUNK + i as u64;
            let p = plain_chunks.next().unwrap_or_default();
            if !opener.open(counter, counter == last, s, p) {
                // A full chunk that opens as a non-final one where the final one was
                // due: the file was cut at a chunk boundary.
                let cut = counter == last
                    && s.len() == ENCRYPTED_CHUNK_SIZE
                    && opener.open(counter, false, s, p);
                return Err(if cut {
                    CryptoError::PayloadTruncated { chunk: counter + 1 }
                } else {
                    CryptoError::PayloadDamaged { chunk: counter }
                });
            }
            hasher.update(p);
        }
        Ok(hasher.finish())
    }

    /// Decrypts the whole file (`ciphertext`, exactly the length given to [`Self::new`])
    /// into `plain` (exactly `layout().plaintext_len()` bytes) on all cores, checking the
    /// keyed digest against `expected` when given. On any failure `plain` is wiped.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        plain: &mut [u8],
        expected: Option<&Digest32>,
    ) -> Result<PartsSummary> {
        let result = self.decrypt_unwiped(ciphertext, plain, expected);
        if result.is_err() {
            plain.zeroize();
        }
        result
    }

    fn decrypt_unwiped(
        &self,
        ciphertext: &[u8],
        plain: &mut [u8],
        expected: Option<&Digest32>,
    ) -> Result<PartsSummary> {
        if ciphertext.len() as u64 != self.layout.ciphertext_len() {
            return Err(CryptoError::BufferLength {
                expected: self.layout.ciphertext_len(),
                actual: ciphertext.len() as u64,
            });
        }
        let jobs = split_parts(&self.layout, plain, ciphertext)?;
        let digests = in_parallel(jobs, |(index, out, sealed)| {
            self.open_part_unchecked(index, sealed, out)
        })?;
        let summary = summarize(&self.digest_key, self.layout, digests);
        if let Some(expected) = expected {
            summary.verify(expected)?;
        }
        Ok(summary)
    }
}

/// Decrypts a whole binary age file held in memory on all cores, cutting it into parts
/// of `part_size` bytes; checks the keyed digest against `expected` when given.
pub fn decrypt_parts(
    ciphertext: &[u8],
    keys: &Keys,
    part_size: u64,
    expected: Option<&Digest32>,
) -> Result<(Vec<u8>, PartsSummary)> {
    let parts = PartDecryption::new(ciphertext, ciphertext.len() as u64, keys, part_size)?;
    let mut plain = vec![0u8; parts.layout.plaintext_len as usize];
    let summary = parts.decrypt(ciphertext, &mut plain, expected)?;
    Ok((plain, summary))
}

/// Cuts a plaintext buffer and a ciphertext buffer (one of them writable) into the
/// parts of `layout`: `(index, plaintext part, ciphertext part)`.
fn split_parts<P: Splittable, S: Splittable>(
    layout: &PartLayout,
    plain: P,
    sealed: S,
) -> Result<Vec<(u64, P, S)>> {
    for (expected, actual) in [
        (layout.plaintext_len, plain.len()),
        (layout.ciphertext_len(), sealed.len()),
    ] {
        if expected != actual as u64 {
            return Err(CryptoError::BufferLength {
                expected,
                actual: actual as u64,
            });
        }
    }
    let (mut plain, mut sealed) = (plain, sealed);
    let mut jobs = Vec::with_capacity(layout.part_count() as usize);
    for index in 0..layout.part_count() {
        let p = layout.plaintext_range(index);
        let s = layout.ciphertext_range(index);
        let (p_part, p_rest) = plain.split((p.end - p.start) as usize);
        let (s_part, s_rest) = sealed.split((s.end - s.start) as usize);
        jobs.push((index, p_part, s_part));
        (plain, sealed) = (p_rest, s_rest);
    }
    Ok(jobs)
}

/// A slice, shared or mutable, that can be cut in two.
trait Splittable: Sized + Send {
    fn len(&self) -> usize;
    fn split(self, at: usize) -> (Self, Self);
}

impl Splittable for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn split(self, at: usize) -> (Self, Self) {
        self.split_at(at)
    }
}

impl Splittable for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn split(self, at: usize) -> (Self, Self) {
        self.split_at_mut(at)
    }
}

/// Runs `work` on every job on all cores (the calling thread included), each worker
/// taking the next job when it is done with one. Returns the digests in job order, or
/// the error of the first failing job; after a failure no new job starts.
fn in_parallel<T, F>(jobs: Vec<T>, work: F) -> Result<Vec<Digest32>>
where
    T: Send,
    F: Fn(T) -> Result<Digest32> + Sync,
{
    let count = jobs.len();
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count);
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let failed = AtomicBool::new(false);
    let worker = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((i, job)) = next else { break };
            let result = work(job);
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            done.push((i, result));
        }
        done
    };
    let finished: Vec<(usize, Result<Digest32>)> = thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(worker)).collect();
        let mut all = worker();
        for helper in helpers {
            all.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        all
    });
    let mut digests = vec![None; count];
    let mut first_error: Option<(usize, CryptoError)> = None;
    for (i, result) in finished {
        match result {
            Ok(d) => digests[i] = Some(d),
            Err(e) if first_error.as_ref().is_none_or(|(j, _)| i < *j) => {
                first_error = Some((i, e))
            }
            Err(_) => {}
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(digests
        .into_iter()
        .map(|d| d.expect("every job ran when none failed"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AgeIdentity, Recipients};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    #[test]
    fn parallel_output_is_byte_identical_to_the_serial_encryptor() {
        let (file, account) = (AgeIdentity::generate(), AgeIdentity::generate());
        let (file, account) = (file.to_recipient(), account.to_recipient());
        let recipients = Recipients::Vault {
            file: &file,
            account: &account,
        };
        let p = 64 * 1024;
        for len in [
            0,
            1,
            p - 1,
            p,
            p + 1,
            2 * p - 1,
            2 * p,
            2 * p + 1,
            7 * p + 3,
            8 * p,
        ] {
            let plain = data(len);
            for part_size in [p as u64, 2 * p as u64, 4 * p as u64] {
                let serial_enc = Encryption::new(recipients).unwrap();
                let parallel_enc = serial_enc.duplicate().unwrap();
                let key = serial_enc.digest_key.clone();
                let mut serial = Vec::new();
                serial_enc.encrypt(&plain[..], &mut serial).unwrap();
                let (parallel, summary) = parallel_enc
                    .encrypt_parts_to_vec(&plain, part_size)
                    .unwrap();
                assert!(serial == parallel, "len {len}, part size {part_size}");
                assert_eq!(
                    summary.keyed_digest,
                    *blake3::keyed_hash(&key.0, &plain).as_bytes()
                );
                assert_eq!(
                    summary.part_digests.len() as u64,
                    summary.layout.part_count()
                );
            }
        }
    }

    #[test]
    fn layout_ranges_tile_the_file() {
        let p = 2 * CHUNK;
        for len in [0, 1, CHUNK, p - 1, p, p + 1, 5 * p + 17] {
            let layout = PartLayout::new(200, len, p).unwrap();
            let mut at = 0;
            let mut plain_at = 0;
            for i in 0..layout.part_count() {
                let c = layout.ciphertext_range(i);
                let r = layout.plaintext_range(i);
                assert_eq!((c.start, r.start), (at, plain_at), "len {len} part {i}");
                assert!(c.end > c.start);
                (at, plain_at) = (c.end, r.end);
            }
            assert_eq!((at, plain_at), (layout.ciphertext_len(), len));
        }
    }
}
