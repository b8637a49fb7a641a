//! Encrypt → decrypt roundtrips, tampering and truncation, ranges, and the async body.

use std::io::Cursor;

use hashdrop_crypto::{
    decrypt, decrypt_with, encrypt, AgeIdentity, CryptoError, Encryption, Keys, Passphrase,
    PlainDigest, Recipients, SeekableDecryptor, CHUNK_SIZE,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect()
}

struct VaultKeys {
    file: AgeIdentity,
    account: AgeIdentity,
}

impl VaultKeys {
    fn new() -> Self {
        Self {
            file: AgeIdentity::generate(),
            account: AgeIdentity::generate(),
        }
    }

    fn seal(&self, data: &[u8]) -> Vec<u8> {
        let (file, account) = (self.file.to_recipient(), self.account.to_recipient());
        let mut out = Vec::new();
        encrypt(
            data,
            &mut out,
            Recipients::Vault {
                file: &file,
                account: &account,
            },
        )
        .unwrap();
        out
    }
}

const BOUNDARY_SIZES: &[usize] = &[
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE,
    8 * CHUNK_SIZE - 1,
    8 * CHUNK_SIZE,
    8 * CHUNK_SIZE + 1,
    17 * CHUNK_SIZE + 12345,
];

#[test]
fn vault_mode_roundtrips_at_chunk_and_batch_boundaries_with_either_key() {
    let keys = VaultKeys::new();
    for &len in BOUNDARY_SIZES {
        let data = plaintext(len, 1);
        let sealed = keys.seal(&data);
        let mut digests = Vec::new();
        for key in [&keys.file, &keys.account] {
            let mut out = Vec::new();
            let summary = decrypt(&sealed[..], &mut out, &Keys::identity(key.clone())).unwrap();
            assert_eq!(out, data, "len {len}");
            assert_eq!(summary.plaintext_len, len as u64);
            digests.push(summary.plaintext_digest);

            // Older uploads recorded SHA-256, which a decryption can still compute.
            let mut out = Vec::new();
            let keys = Keys::identity(key.clone());
            let legacy = decrypt_with(&sealed[..], &mut out, &keys, PlainDigest::Sha256).unwrap();
            assert_eq!(
                legacy.plaintext_digest,
                <[u8; 32]>::from(Sha256::digest(&data))
            );
        }
        // Both keys open the same file key, so they derive the same keyed digest.
        assert_eq!(digests[0], digests[1], "len {len}");
    }
}

#[test]
fn encrypt_reports_hash_and_exact_predicted_length() {
    let keys = VaultKeys::new();
    let (file, account) = (keys.file.to_recipient(), keys.account.to_recipient());
    for &len in BOUNDARY_SIZES {
        let data = plaintext(len, 2);
        let enc = Encryption::new(Recipients::Vault {
            file: &file,
            account: &account,
        })
        .unwrap();
        let predicted = enc.ciphertext_len(len as u64);
        let mut out = Vec::new();
        let summary = enc.encrypt(&data[..], &mut out).unwrap();
        assert_eq!(out.len() as u64, predicted, "len {len}");
        assert_eq!(summary.ciphertext_len, predicted);
        assert_eq!(summary.plaintext_len, len as u64);
        // The digest the upload records is the one a recipient recomputes.
        let opened = decrypt(
            &out[..],
            std::io::sink(),
            &Keys::identity(keys.file.clone()),
        )
        .unwrap();
        assert_eq!(summary.keyed_digest, opened.plaintext_digest, "len {len}");
        assert_ne!(
            summary.keyed_digest,
            <[u8; 32]>::from(Sha256::digest(&data)),
            "not the plaintext SHA-256"
        );
    }
}

#[test]
fn passphrase_mode_roundtrips_and_rejects_a_wrong_passphrase() {
    let pass = Passphrase::new("correct horse battery staple".into());
    let data = plaintext(CHUNK_SIZE * 2 + 5, 3);
    let mut sealed = Vec::new();
    encrypt(
        &data[..],
        &mut sealed,
        Recipients::Passphrase {
            passphrase: &pass,
            work_factor: Some(10),
        },
    )
    .unwrap();
    let mut out = Vec::new();
    decrypt(&sealed[..], &mut out, &Keys::passphrase(pass)).unwrap();
    assert_eq!(out, data);

    let mut out = Vec::new();
    let wrong = decrypt(
        &sealed[..],
        &mut out,
        &Keys::passphrase(Passphrase::new("nope".into())),
    );
    assert!(
        matches!(wrong, Err(CryptoError::NoMatchingKey)),
        "{wrong:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn a_stranger_key_is_no_match_and_releases_nothing() {
    let keys = VaultKeys::new();
    let sealed = keys.seal(b"for your eyes only");
    let mut out = Vec::new();
    let result = decrypt(
        &sealed[..],
        &mut out,
        &Keys::identity(AgeIdentity::generate()),
    );
    assert!(
        matches!(result, Err(CryptoError::NoMatchingKey)),
        "{result:?}"
    );
    assert!(out.is_empty());
}

#[test]
fn the_length_promise_is_enforced() {
    let keys = VaultKeys::new();
    let (file, account) = (keys.file.to_recipient(), keys.account.to_recipient());
    let recipients = Recipients::Vault {
        file: &file,
        account: &account,
    };
    for (promised, actual) in [(10u64, 11usize), (10, 9), (0, CHUNK_SIZE * 9)] {
        let enc = Encryption::new(recipients)
            .unwrap()
            .expect_plaintext_len(promised);
        let result = enc.encrypt(&plaintext(actual, 4)[..], std::io::sink());
        assert!(
            matches!(result, Err(CryptoError::LengthMismatch { expected, .. }) if expected == promised),
            "{result:?}"
        );
    }
}

#[test]
fn damage_in_a_later_chunk_releases_only_the_chunks_before_it() {
    let keys = VaultKeys::new();
    let data = plaintext(CHUNK_SIZE * 12 + 100, 5);
    let mut sealed = keys.seal(&data);
    let header_len = sealed.len() - hashdrop_crypto::payload_len(data.len() as u64) as usize;
    // Flip a byte inside chunk 10.
    sealed[header_len + 10 * hashdrop_crypto::ENCRYPTED_CHUNK_SIZE + 7] ^= 0x40;
    let mut out = Vec::new();
    let result = decrypt(&sealed[..], &mut out, &Keys::identity(keys.file.clone()));
    assert!(
        matches!(result, Err(CryptoError::PayloadDamaged { chunk: 10 })),
        "{result:?}"
    );
    assert_eq!(out, data[..10 * CHUNK_SIZE]);
}

#[test]
fn truncation_at_a_chunk_boundary_is_reported_as_truncation() {
    let keys = VaultKeys::new();
    let data = plaintext(CHUNK_SIZE * 3 + 10, 6);
    let sealed = keys.seal(&data);
    let header_len = sealed.len() - hashdrop_crypto::payload_len(data.len() as u64) as usize;
    let cut = header_len + 2 * hashdrop_crypto::ENCRYPTED_CHUNK_SIZE;
    let mut out = Vec::new();
    let result = decrypt(&sealed[..cut], &mut out, &Keys::identity(keys.file.clone()));
    assert!(
        matches!(result, Err(CryptoError::PayloadTruncated { chunk: 2 })),
        "{result:?}"
    );
    assert_eq!(out, data[..2 * CHUNK_SIZE]);
}

#[test]
fn ranges_decrypt_only_what_is_asked_and_still_authenticate() {
    let keys = VaultKeys::new();
    let data = plaintext(CHUNK_SIZE * 5 + 333, 7);
    let sealed = keys.seal(&data);
    let mut reader =
        SeekableDecryptor::new(Cursor::new(&sealed), &Keys::identity(keys.file.clone())).unwrap();
    assert_eq!(reader.plaintext_len(), data.len() as u64);
    for (start, end) in [
        (0, 0),
        (0, 10),
        (CHUNK_SIZE - 3, CHUNK_SIZE + 3),
        (CHUNK_SIZE * 5, data.len()),
        (17, data.len()),
    ] {
        let mut out = Vec::new();
        reader
            .read_range(start as u64, end as u64, &mut out)
            .unwrap();
        assert_eq!(out, data[start..end], "{start}..{end}");
    }
    let past = reader.read_range(0, data.len() as u64 + 1, std::io::sink());
    assert!(matches!(past, Err(CryptoError::RangeOutOfBounds { .. })));

    // Damage chunk 3: ranges elsewhere still work, ranges touching it fail.
    let mut damaged = sealed.clone();
    let header_len = sealed.len() - hashdrop_crypto::payload_len(data.len() as u64) as usize;
    damaged[header_len + 3 * hashdrop_crypto::ENCRYPTED_CHUNK_SIZE + 1] ^= 1;
    let mut reader =
        SeekableDecryptor::new(Cursor::new(&damaged), &Keys::identity(keys.file.clone())).unwrap();
    let mut out = Vec::new();
    reader.read_range(0, 100, &mut out).unwrap();
    assert_eq!(out, data[..100]);
    let bad = reader.read_range(
        (3 * CHUNK_SIZE) as u64,
        (3 * CHUNK_SIZE + 1) as u64,
        std::io::sink(),
    );
    assert!(
        matches!(bad, Err(CryptoError::PayloadDamaged { chunk: 3 })),
        "{bad:?}"
    );
}

#[test]
fn a_range_reader_notices_a_truncated_file() {
    let keys = VaultKeys::new();
    let data = plaintext(CHUNK_SIZE * 3, 8);
    let sealed = keys.seal(&data);
    let cut = sealed.len() - hashdrop_crypto::ENCRYPTED_CHUNK_SIZE;
    let mut reader = SeekableDecryptor::new(
        Cursor::new(&sealed[..cut]),
        &Keys::identity(keys.file.clone()),
    )
    .unwrap();
    let result = reader.read_range(0, reader.plaintext_len(), std::io::sink());
    assert!(
        matches!(result, Err(CryptoError::PayloadTruncated { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_async_body_streams_a_decryptable_file_and_reports_its_hash() {
    use futures_util::StreamExt;
    let keys = VaultKeys::new();
    let (file, account) = (keys.file.to_recipient(), keys.account.to_recipient());
    let data = plaintext(CHUNK_SIZE * 9 + 77, 9);
    let enc = Encryption::new(Recipients::Vault {
        file: &file,
        account: &account,
    })
    .unwrap()
    .expect_plaintext_len(data.len() as u64);
    let predicted = enc.ciphertext_len(data.len() as u64);
    let mut body = enc.into_body(Cursor::new(data.clone()));
    let handle = body.summary_handle();
    assert!(handle.get().is_none());
    let mut sealed = Vec::new();
    let mut pieces = 0;
    while let Some(piece) = body.next().await {
        sealed.extend_from_slice(&piece.unwrap());
        pieces += 1;
    }
    assert!(pieces > 2, "the body streams in pieces, not one buffer");
    assert_eq!(sealed.len() as u64, predicted);
    let summary = handle.get().expect("summary after the end");
    let mut out = Vec::new();
    let opened = decrypt(&sealed[..], &mut out, &Keys::identity(keys.file.clone())).unwrap();
    assert_eq!(out, data);
    assert_eq!(summary.keyed_digest, opened.plaintext_digest);
}

#[tokio::test]
async fn the_async_body_fails_when_the_input_is_longer_than_promised() {
    use futures_util::StreamExt;
    let keys = VaultKeys::new();
    let (file, account) = (keys.file.to_recipient(), keys.account.to_recipient());
    let enc = Encryption::new(Recipients::Vault {
        file: &file,
        account: &account,
    })
    .unwrap()
    .expect_plaintext_len(5);
    let mut body = enc.into_body(Cursor::new(vec![1u8; 6]));
    let mut saw_error = false;
    while let Some(piece) = body.next().await {
        if piece.is_err() {
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
}

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..300,
        (CHUNK_SIZE - 300)..(CHUNK_SIZE + 300),
        (2 * CHUNK_SIZE - 50)..(3 * CHUNK_SIZE + 50),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_size_roundtrips(len in sizes(), seed in any::<u8>()) {
        let keys = VaultKeys::new();
        let data = plaintext(len, seed);
        let sealed = keys.seal(&data);
        let mut out = Vec::new();
        decrypt(&sealed[..], &mut out, &Keys::identity(keys.file.clone())).unwrap();
        prop_assert_eq!(out, data);
    }

    #[test]
    fn no_single_byte_change_decrypts_to_the_end(len in sizes(), pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let keys = VaultKeys::new();
        let data = plaintext(len, 11);
        let mut sealed = keys.seal(&data);
        let at = pos.index(sealed.len());
        sealed[at] ^= flip;
        let mut out = Vec::new();
        let result = decrypt(&sealed[..], &mut out, &Keys::identity(keys.file.clone()));
        prop_assert!(result.is_err(), "byte {} of {} changed, still decrypted", at, sealed.len());
        prop_assert!(data.starts_with(&out), "released bytes are not a prefix of the plaintext");
    }

    #[test]
    fn no_truncation_decrypts_to_the_end(len in sizes(), pos in any::<prop::sample::Index>()) {
        let keys = VaultKeys::new();
        let data = plaintext(len, 12);
        let sealed = keys.seal(&data);
        let cut = pos.index(sealed.len());
        let mut out = Vec::new();
        let result = decrypt(&sealed[..cut], &mut out, &Keys::identity(keys.file.clone()));
        prop_assert!(result.is_err(), "cut at {} of {} still decrypted", cut, sealed.len());
        prop_assert!(data.starts_with(&out));
    }

    #[test]
    fn appended_bytes_never_decrypt_to_the_end(len in sizes(), extra in prop::collection::vec(any::<u8>(), 1..100)) {
        let keys = VaultKeys::new();
        let mut sealed = keys.seal(&plaintext(len, 13));
        sealed.extend_from_slice(&extra);
        let result = decrypt(&sealed[..], std::io::sink(), &Keys::identity(keys.file.clone()));
        prop_assert!(result.is_err());
    }
}
