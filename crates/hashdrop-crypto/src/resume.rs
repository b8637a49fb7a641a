//! Continuing a streaming decryption that stopped part-way, as a resumed download
//! does: the caller kept the plaintext of the first chunks and fetches the ciphertext
//! from the next chunk on (`header_len + chunk × 65552`, an HTTP Range).
//!
//! What this authenticates: the header (with the keys given, as any decryption does)
//! and every chunk from the resume point on. What it cannot: the plaintext already
//! written, which is only hashed. The digest in the summary covers the whole plaintext,
//! so a caller that compares it with a recorded digest (the keyed digest, or an older
//! upload's SHA-256) learns whether that prefix is still what was decrypted before.

use std::io::{self, Read, Write};

use crate::decrypt::{decrypt_payload, start_digest, DecryptSummary, PlainDigest};
use crate::error::{CryptoError, Result};
use crate::hashing::writable;
use crate::header::open_header;
use crate::keys::Keys;
use crate::stream::{BATCH_PLAIN, CHUNK_SIZE};

/// Decrypts a binary age file from STREAM chunk number `chunk` on.
///
/// - `header`: the file's header and payload nonce, exactly (see
///   [`crate::age_header_len`]); it is opened with `keys` and its MAC checked.
/// - `written`: the plaintext of chunks `0..chunk`, `chunk × 64 KiB` bytes; only that
///   many are read. It is hashed, not authenticated.
/// - `rest`: the ciphertext from byte `header.len() + chunk × 65552` to the end.
///
/// The plaintext of the remaining chunks goes to `output`, one authenticated chunk at a
/// time as in [`crate::decrypt_with`]. The summary is the one a full decryption gives:
/// `digest` over the whole plaintext (`written`'s bytes, then `output`'s) and its whole
/// length. Resuming at chunk 0 with an empty `written` is a full decryption.
pub fn decrypt_resumed<P: Read, R: Read, W: Write>(
    header: &[u8],
    chunk: u64,
    written: P,
    rest: R,
    output: W,
    keys: &Keys,
    digest: PlainDigest,
) -> Result<DecryptSummary> {
    let mut unread = header;
    let opened = open_header(&mut unread, keys)?;
    if !unread.is_empty() {
        // Bytes after the nonce are not part of a header.
        return Err(CryptoError::HeaderDamaged);
    }
    let expected = chunk
        .checked_mul(CHUNK_SIZE as u64)
        .ok_or(CryptoError::PayloadTruncated { chunk })?;
    let mut hasher = start_digest(&opened, digest);
    let mut written = written.take(expected);
    let mut left = expected;
    while left > 0 {
        let mut buf = hasher.buffer();
        let want = left.min(BATCH_PLAIN as u64) as usize;
        let got = fill(&mut written, &mut writable(&mut buf)[..want])?;
        hasher.submit(&buf, got);
        drop(buf);
        left -= got as u64;
        if got < want {
            return Err(CryptoError::PrefixTooShort {
                expected,
                actual: expected - left,
            });
        }
    }
    decrypt_payload(rest, output, &opened, hasher, chunk)
}

/// Reads until `buf` is full or the input ends.
fn fill<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(got) => n += got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ENCRYPTED_CHUNK_SIZE;
    use crate::{age_header_len, decrypt_with, AgeIdentity, AgeRecipient, Encryption, Recipients};

    const C: usize = CHUNK_SIZE;

    struct Sealed {
        keys: Keys,
        recipient: AgeRecipient,
        plain: Vec<u8>,
        file: Vec<u8>,
        header_len: usize,
    }

    impl Sealed {
        fn new(len: usize) -> Self {
            let id = AgeIdentity::generate();
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut file = Vec::new();
            let recipient = id.to_recipient();
            Encryption::new(Recipients::Account(&recipient))
                .unwrap()
                .encrypt(&plain[..], &mut file)
                .unwrap();
            let header_len = age_header_len(&file).expect("a binary age file");
            Self {
                keys: Keys::identity(id),
                recipient,
                plain,
                file,
                header_len,
            }
        }

        fn header(&self) -> &[u8] {
            &self.file[..self.header_len]
        }

        /// The index of the final chunk.
        fn last_chunk(&self) -> u64 {
            (self.plain.len().div_ceil(C).max(1) - 1) as u64
        }

        /// The ciphertext from chunk `k` on.
        fn rest(&self, k: u64) -> &[u8] {
            &self.file[self.header_len + k as usize * ENCRYPTED_CHUNK_SIZE..]
        }

        fn prefix(&self, k: u64) -> &[u8] {
            &self.plain[..k as usize * C]
        }

        fn resume(&self, k: u64, digest: PlainDigest) -> (Result<DecryptSummary>, Vec<u8>) {
            let mut out = Vec::new();
            let r = decrypt_resumed(
                self.header(),
                k,
                self.prefix(k),
                self.rest(k),
                &mut out,
                &self.keys,
                digest,
            );
            (r, out)
        }
    }

    #[test]
    fn resuming_at_any_chunk_gives_what_a_full_decryption_gives() {
        for len in [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 5, 4 * C] {
            let s = Sealed::new(len);
            for digest in [PlainDigest::Keyed, PlainDigest::Sha256] {
                let full = decrypt_with(&s.file[..], io::sink(), &s.keys, digest).unwrap();
                assert_eq!(full.plaintext_len, len as u64);
                // 0, every middle chunk, and the last one.
                for k in 0..=s.last_chunk() {
                    let (summary, out) = s.resume(k, digest);
                    let summary = summary.unwrap_or_else(|e| panic!("len {len} at {k}: {e}"));
                    assert_eq!(summary, full, "len {len}, resumed at chunk {k}, {digest:?}");
                    assert_eq!(out, &s.plain[k as usize * C..], "len {len} at {k}");
                }
            }
        }
    }

    #[test]
    fn the_digest_covers_the_prefix_it_was_handed() {
        let s = Sealed::new(3 * C + 5);
        let full = decrypt_with(&s.file[..], io::sink(), &s.keys, PlainDigest::Keyed).unwrap();
        let mut changed = s.prefix(2).to_vec();
        changed[C + 10] ^= 1;
        let mut out = Vec::new();
        let summary = decrypt_resumed(
            s.header(),
            2,
            &changed[..],
            s.rest(2),
            &mut out,
            &s.keys,
            PlainDigest::Keyed,
        )
        .unwrap();
        assert_eq!(out, &s.plain[2 * C..], "the rest still authenticates");
        assert_ne!(
            summary.plaintext_digest, full.plaintext_digest,
            "a changed prefix shows in the digest"
        );
        assert_eq!(summary.plaintext_len, full.plaintext_len);
    }

    #[test]
    fn bytes_after_the_prefix_are_not_read() {
        let s = Sealed::new(3 * C);
        let full = decrypt_with(&s.file[..], io::sink(), &s.keys, PlainDigest::Keyed).unwrap();
        let mut out = Vec::new();
        let summary = decrypt_resumed(
            s.header(),
            1,
            &s.plain[..], // the whole plaintext, as an untruncated file would be
            s.rest(1),
            &mut out,
            &s.keys,
            PlainDigest::Keyed,
        )
        .unwrap();
        assert_eq!(summary, full);
        assert_eq!(out, &s.plain[C..]);
    }

    #[test]
    fn a_short_prefix_is_refused_before_any_output() {
        let s = Sealed::new(3 * C);
        let mut out = Vec::new();
        let err = decrypt_resumed(
            s.header(),
            2,
            &s.plain[..2 * C - 1],
            s.rest(2),
            &mut out,
            &s.keys,
            PlainDigest::Keyed,
        )
        .unwrap_err();
        assert!(
            matches!(err, CryptoError::PrefixTooShort { expected, actual }
                if expected == 2 * C as u64 && actual == 2 * C as u64 - 1),
            "{err:?}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_wrong_key_or_header_fails_before_any_output() {
        let s = Sealed::new(3 * C + 5);
        let run = |header: &[u8], keys: &Keys| {
            let mut out = Vec::new();
            let r = decrypt_resumed(
                header,
                1,
                s.prefix(1),
                s.rest(1),
                &mut out,
                keys,
                PlainDigest::Keyed,
            );
            (r.unwrap_err(), out)
        };

        let stranger = Keys::identity(AgeIdentity::generate());
        let (err, out) = run(s.header(), &stranger);
        assert!(matches!(err, CryptoError::NoMatchingKey), "{err:?}");
        assert!(out.is_empty());

        // A changed MAC line.
        let mut forged = s.header().to_vec();
        let mac = forged.len() - 16 - 5;
        forged[mac] ^= 1;
        let (err, out) = run(&forged, &s.keys);
        assert!(
            matches!(
                err,
                CryptoError::HeaderMacFailed | CryptoError::HeaderDamaged
            ),
            "{err:?}"
        );
        assert!(out.is_empty());

        // A header with a byte of payload after its nonce.
        let (err, _) = run(&s.file[..s.header_len + 1], &s.keys);
        assert!(matches!(err, CryptoError::HeaderDamaged), "{err:?}");
        // A header cut inside its nonce.
        let (err, _) = run(&s.file[..s.header_len - 1], &s.keys);
        assert!(matches!(err, CryptoError::HeaderDamaged), "{err:?}");

        // The header of another file to the same identity: a fresh file key and nonce,
        // so its payload key opens nothing here.
        let mut other_file = Vec::new();
        Encryption::new(Recipients::Account(&s.recipient))
            .unwrap()
            .encrypt(&s.plain[..], &mut other_file)
            .unwrap();
        let other_header = &other_file[..age_header_len(&other_file).unwrap()];
        let (err, out) = run(other_header, &s.keys);
        assert!(
            matches!(err, CryptoError::PayloadDamaged { chunk: 1 }),
            "{err:?}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn damaged_or_cut_ciphertext_after_the_resume_point_fails() {
        let s = Sealed::new(4 * C + 9);
        // A flipped byte in chunk 3, resuming at 2: chunk 2 comes out, then the error.
        let mut damaged = s.rest(2).to_vec();
        damaged[ENCRYPTED_CHUNK_SIZE + 100] ^= 0x20;
        let mut out = Vec::new();
        let err = decrypt_resumed(
            s.header(),
            2,
            s.prefix(2),
            &damaged[..],
            &mut out,
            &s.keys,
            PlainDigest::Keyed,
        )
        .unwrap_err();
        assert!(
            matches!(err, CryptoError::PayloadDamaged { chunk: 3 }),
            "{err:?}"
        );
        assert!(out.len() <= C && s.plain[2 * C..].starts_with(&out));

        // The final chunk missing.
        let rest = s.rest(2);
        let cut = &rest[..2 * ENCRYPTED_CHUNK_SIZE];
        let err = decrypt_resumed(
            s.header(),
            2,
            s.prefix(2),
            cut,
            io::sink(),
            &s.keys,
            PlainDigest::Keyed,
        )
        .unwrap_err();
        assert!(err.is_payload_failure(), "{err:?}");

        // Resuming past the final chunk finds nothing to end the stream: callers
        // resume at the final chunk at the latest.
        let whole = Sealed::new(4 * C);
        let past = whole.last_chunk() + 1;
        let err = decrypt_resumed(
            whole.header(),
            past,
            &whole.plain[..],
            &[][..],
            io::sink(),
            &whole.keys,
            PlainDigest::Keyed,
        )
        .unwrap_err();
        assert!(
            matches!(err, CryptoError::PayloadTruncated { chunk: 4 }),
            "{err:?}"
        );
    }
}
