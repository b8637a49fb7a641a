//! The keyed digest that replaces the plaintext SHA-256 for new uploads.
//!
//! It is plain keyed BLAKE3 of the whole plaintext, under a 32-byte key derived from the
//! age file key: `BLAKE3-keyed(HKDF-SHA-256(ikm = file key, salt = "", info =
//! DIGEST_KEY_LABEL), plaintext)`. Whoever can open the file (the share link, the vault)
//! can recompute it; the server, which never sees the file key, cannot test a guess
//! against it.
//!
//! BLAKE3 is a tree hash, so the digest of a file split into parts is computed part by
//! part, on as many cores as there are, and the parts' chaining values are merged into
//! the root with the `blake3::hazmat` subtree functions. A part is a power-of-two number
//! of bytes (at least one STREAM chunk), starting at a multiple of its size, which makes
//! each part a complete BLAKE3 subtree. The result does not depend on the part size: it
//! is the same as hashing the plaintext in one go, which the tests check.
//!
//! A part's digest (what a resumed upload compares) is that part's BLAKE3 chaining value
//! under the same key; for a file of one part it is the file's digest. See
//! `docs/FORMAT.md`.

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CryptoError, Result};
use crate::hashing::PlainHasher;
use crate::stream::FileKeyBytes;

/// The HKDF-SHA-256 `info` that turns an age file key into the keyed-digest key.
pub const DIGEST_KEY_LABEL: &[u8] = b"hashdrop.keyed-digest.v1";

/// A 32-byte digest: the whole file's, or one part's.
pub type Digest32 = [u8; 32];

/// The BLAKE3 key of one file's digest, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct DigestKey(pub(crate) [u8; 32]);

impl DigestKey {
    /// `HKDF-SHA-256(ikm = file key, salt = none, info = DIGEST_KEY_LABEL)`.
    pub(crate) fn derive(file_key: &FileKeyBytes) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &file_key.0)
            .expand(DIGEST_KEY_LABEL, &mut key)
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        Self(key)
    }

    /// The whole-file digest as one running hash, for the streaming paths.
    pub(crate) fn whole_file(&self) -> PlainHasher {
        PlainHasher::Keyed(Box::new(blake3::Hasher::new_keyed(&self.0)))
    }

    /// A hasher for the part at plaintext offset `offset` of a file of `parts` parts.
    pub(crate) fn part_hasher(&self, parts: u64, offset: u64) -> PartHasher {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        if parts > 1 {
            hasher.set_input_offset(offset);
        }
        PartHasher {
            hasher,
            whole_file: parts == 1,
        }
    }

    /// Merges the part digests (in order) of a plaintext of `plaintext_len` bytes cut
    /// into parts of `part_size` bytes into the file's digest.
    pub(crate) fn merge(
        &self,
        part_digests: &[Digest32],
        part_size: u64,
        plaintext_len: u64,
    ) -> Digest32 {
        match part_digests {
            [] => unreachable!("a file has at least one part"),
            [whole] => *whole,
            _ => {
                let mode = Mode::KeyedHash(&self.0);
                let (left, right) = split_tree(part_digests, part_size, plaintext_len, mode);
                *merge_subtrees_root(&left, &right, mode).as_bytes()
            }
        }
    }
}

/// The chaining values of the left and right halves of the subtree covering `parts`
/// (`len` bytes), split exactly where BLAKE3 splits it.
fn split_tree(
    parts: &[ChainingValue],
    part_size: u64,
    len: u64,
    mode: Mode<'_>,
) -> (ChainingValue, ChainingValue) {
    // len > part_size here, so the left subtree (a power of two at least as large as
    // half of len) is a whole number of parts, and the right one is not empty.
    let left_len = blake3::hazmat::left_subtree_len(len);
    let left_parts = (left_len / part_size) as usize;
    debug_assert!(left_len % part_size == 0 && left_parts < parts.len());
    (
        subtree(&parts[..left_parts], part_size, left_len, mode),
        subtree(&parts[left_parts..], part_size, len - left_len, mode),
    )
}

fn subtree(parts: &[ChainingValue], part_size: u64, len: u64, mode: Mode<'_>) -> ChainingValue {
    if let [one] = parts {
        return *one;
    }
    let (left, right) = split_tree(parts, part_size, len, mode);
    merge_subtrees_non_root(&left, &right, mode)
}

/// Keyed BLAKE3 over one part, fed chunk by chunk as it is sealed or opened.
pub(crate) struct PartHasher {
    hasher: blake3::Hasher,
    whole_file: bool,
}

impl PartHasher {
    pub(crate) fn update(&mut self, plain: &[u8]) {
        self.hasher.update(plain);
    }

    /// The part's chaining value, or the file digest when the part is the whole file.
    pub(crate) fn finish(self) -> Digest32 {
        if self.whole_file {
            *self.hasher.finalize().as_bytes()
        } else {
            self.hasher.finalize_non_root()
        }
    }
}

/// Compares two digests in constant time.
pub(crate) fn check(actual: &Digest32, expected: &Digest32) -> Result<()> {
    if blake3::Hash::from_bytes(*actual) == blake3::Hash::from_bytes(*expected) {
        Ok(())
    } else {
        Err(CryptoError::DigestMismatch)
    }
}

/// Checks that `part_size` can cut a file into BLAKE3 subtrees along STREAM chunks.
pub(crate) fn check_part_size(part_size: u64) -> Result<()> {
    if part_size.is_power_of_two() && part_size >= crate::stream::CHUNK_SIZE as u64 {
        Ok(())
    } else {
        Err(CryptoError::InvalidPartSize { part_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_in_parts(key: &DigestKey, data: &[u8], part_size: usize) -> Digest32 {
        let parts = data.len().div_ceil(part_size).max(1) as u64;
        let mut cvs = Vec::new();
        for (i, part) in data.chunks(part_size).enumerate() {
            let mut h = key.part_hasher(parts, (i * part_size) as u64);
            h.update(part);
            cvs.push(h.finish());
        }
        if data.is_empty() {
            cvs.push(key.part_hasher(1, 0).finish());
        }
        key.merge(&cvs, part_size as u64, data.len() as u64)
    }

    #[test]
    fn parts_merge_to_plain_keyed_blake3_whatever_the_split() {
        let key = DigestKey::derive(&FileKeyBytes([9u8; 16]));
        let p = 64 * 1024;
        let data: Vec<u8> = (0..(9 * p + 5000)).map(|i| (i % 251) as u8).collect();
        for len in [
            0,
            1,
            1024,
            p - 1,
            p,
            p + 1,
            2 * p,
            2 * p + 1,
            3 * p,
            3 * p + 1,
            4 * p,
            5 * p + 3,
            8 * p,
            8 * p + 1,
            9 * p + 5000,
        ] {
            let expected = *blake3::keyed_hash(&key.0, &data[..len]).as_bytes();
            for part_size in [p, 2 * p, 4 * p, 16 * p] {
                assert_eq!(
                    digest_in_parts(&key, &data[..len], part_size),
                    expected,
                    "len {len}, part size {part_size}"
                );
            }
        }
    }

    #[test]
    fn part_sizes_must_be_powers_of_two_of_whole_chunks() {
        assert!(check_part_size(64 * 1024).is_ok());
        assert!(check_part_size(8 << 20).is_ok());
        for bad in [0, 1024, 32 * 1024, 3 * 64 * 1024, (8 << 20) + 65536] {
            assert!(check_part_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_depends_on_the_file_key_only_through_the_documented_hkdf() {
        let key = DigestKey::derive(&FileKeyBytes(*b"0123456789abcdef"));
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&[]), b"0123456789abcdef")
            .expand(b"hashdrop.keyed-digest.v1", &mut expected)
            .unwrap();
        assert_eq!(key.0, expected);
    }

    /// The vector in docs/FORMAT.md ("Keyed digest"): file key 00 01 .. 0f, plaintext
    /// byte i = i mod 251, 3 × 65536 + 1000 bytes, parts of 65536 bytes.
    #[test]
    fn documented_test_vector() {
        let key = DigestKey::derive(&FileKeyBytes(core::array::from_fn(|i| i as u8)));
        assert_eq!(
            crate::to_hex(&key.0),
            "1a13d9ffee0a3a9d9b80483613f2124f3acddca1ac1fd42a2abbebadd5a94cb4"
        );
        let data: Vec<u8> = (0..3 * 65536 + 1000).map(|i| (i % 251) as u8).collect();
        let part_size = 65536;
        let parts: Vec<Digest32> = data
            .chunks(part_size)
            .enumerate()
            .map(|(i, part)| {
                let mut h = key.part_hasher(4, (i * part_size) as u64);
                h.update(part);
                h.finish()
            })
            .collect();
        let hex: Vec<String> = parts.iter().map(crate::to_hex).collect();
        assert_eq!(
            hex,
            [
                "9299dc2042b6c052a528d3d7bc9bc6459526bbc1ce99406e0e75ebda2c203932",
                "02ad8158fa71d1316f6664d6faa7367b18f97823857bceb1aa70d898186cad20",
                "dbb7330cf752ad70e9362f5153a3fc9308269affcdc93faa2a35568428967591",
                "bf9adc97cd3b6e07307ba4f14a627c4074fdb1772a4d10c319a6194eb2950dc8",
            ]
        );
        let file = key.merge(&parts, part_size as u64, data.len() as u64);
        assert_eq!(
            crate::to_hex(&file),
            "a0391675664c6a3aa3ab17676bf536994022da73ae51edda200dc4edf99ea25e"
        );
        assert_eq!(file, *blake3::keyed_hash(&key.0, &data).as_bytes());
        assert_eq!(
            crate::to_hex(&key.part_hasher(1, 0).finish()),
            "5e28190e653e40a41182e6bcb6aa1d5983d85a86b6431936d611ecb4152ab76f",
            "the empty file"
        );
    }
}
