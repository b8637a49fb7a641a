//! Parallel, part-wise encryption and decryption: roundtrips at chunk and part
//! boundaries (with our serial decryptor, the parallel one and the age crate), tampering
//! in any part, truncation at part boundaries, and the keyed digest.

use std::io::Read;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use hashdrop_crypto::{
    decrypt, decrypt_parts, AgeIdentity, CryptoError, Encryption, Keys, PartDecryption, Recipients,
    CHUNK_SIZE,
};
use proptest::prelude::*;

/// Two chunks per part, so small inputs already have several parts.
const PART: usize = 2 * CHUNK_SIZE;

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[1] ^ seed)
        .collect()
}

struct Setup {
    file: AgeIdentity,
    account: AgeIdentity,
}

impl Setup {
    fn new() -> Self {
        Self {
            file: AgeIdentity::generate(),
            account: AgeIdentity::generate(),
        }
    }

    fn encryption(&self) -> Encryption {
        Encryption::new(Recipients::Vault {
            file: &self.file.to_recipient(),
            account: &self.account.to_recipient(),
        })
        .unwrap()
    }

    fn keys(&self) -> Keys {
        Keys::identity(self.file.clone())
    }
}

fn age_crate_decrypt(sealed: &[u8], id: &AgeIdentity) -> Vec<u8> {
    let identity = age::x25519::Identity::from_str(id.to_secret_string().expose_secret()).unwrap();
    let decryptor = age::Decryptor::new(sealed).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).unwrap();
    out
}

fn check_roundtrip(setup: &Setup, len: usize, part_size: usize) {
    let data = plaintext(len, len as u8);
    let (sealed, summary) = setup
        .encryption()
        .encrypt_parts_to_vec(&data, part_size as u64)
        .unwrap();
    assert_eq!(sealed.len() as u64, summary.layout.ciphertext_len());
    assert_eq!(
        summary.part_digests.len(),
        len.div_ceil(part_size).max(1),
        "len {len}"
    );

    // The serial decryptor (and its SHA-256) reads it.
    let mut serial = Vec::new();
    let s = decrypt(&sealed[..], &mut serial, &setup.keys()).unwrap();
    assert!(serial == data, "serial decrypt, len {len}");
    assert_eq!(s.plaintext_len, len as u64);

    // The parallel decryptor reads it, agrees on every digest and verifies the file's.
    let (parallel, back) = decrypt_parts(
        &sealed,
        &setup.keys(),
        part_size as u64,
        Some(&summary.keyed_digest),
    )
    .unwrap();
    assert!(parallel == data, "parallel decrypt, len {len}");
    assert_eq!(back, summary);

    // So does the age crate (the account key opens it too).
    assert!(age_crate_decrypt(&sealed, &setup.file) == data);
    assert!(age_crate_decrypt(&sealed, &setup.account) == data);
}

#[test]
fn roundtrips_at_chunk_and_part_boundaries() {
    let setup = Setup::new();
    let c = CHUNK_SIZE;
    for len in [
        0,
        1,
        c - 1,
        c,
        c + 1,
        PART - 1,
        PART,
        PART + 1,
        3 * PART - 1,
        3 * PART,
        3 * PART + 1,
        5 * PART + c + 7,
    ] {
        check_roundtrip(&setup, len, PART);
    }
    check_roundtrip(&setup, 9 * c + 1, c);
}

fn boundary_len() -> impl Strategy<Value = usize> {
    let c = CHUNK_SIZE;
    let bases = vec![0, c, PART, 2 * PART, 3 * PART, 4 * PART, 2 * PART + c];
    (prop::sample::select(bases), -2i64..=2).prop_map(|(b, d)| (b as i64 + d).max(0) as usize)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_length_near_a_boundary_roundtrips(len in boundary_len(), part in 0usize..3) {
        let setup = Setup::new();
        check_roundtrip(&setup, len, CHUNK_SIZE << part);
    }

    #[test]
    fn any_length_roundtrips(len in 0usize..5 * PART) {
        check_roundtrip(&Setup::new(), len, PART);
    }
}

#[test]
fn a_flipped_byte_in_any_part_fails_and_releases_nothing() {
    let setup = Setup::new();
    let data = plaintext(4 * PART + 1234, 3);
    let (sealed, summary) = setup
        .encryption()
        .encrypt_parts_to_vec(&data, PART as u64)
        .unwrap();
    let layout = summary.layout;
    let parts =
        PartDecryption::new(&sealed, sealed.len() as u64, &setup.keys(), PART as u64).unwrap();
    for index in 0..layout.part_count() {
        let range = layout.ciphertext_range(index);
        // Past the header for the first part, then a few spots in each part.
        let start = if index == 0 {
            layout.header_len()
        } else {
            range.start
        };
        for at in [start, (start + range.end) / 2, range.end - 1] {
            let mut bad = sealed.clone();
            bad[at as usize] ^= 0x20;
            let err = decrypt_parts(&bad, &setup.keys(), PART as u64, None).unwrap_err();
            assert!(
                matches!(err, CryptoError::PayloadDamaged { .. }),
                "part {index} byte {at}: {err:?}"
            );
            let mut plain = vec![0xAAu8; layout.plaintext_len() as usize];
            assert!(parts.decrypt(&bad, &mut plain, None).is_err());
            assert!(plain.iter().all(|&b| b == 0), "output wiped on failure");
            // The damaged part alone fails too; the others still open.
            let p = layout.plaintext_range(index);
            let mut out = vec![0u8; (p.end - p.start) as usize];
            assert!(parts
                .open_part(
                    index,
                    &bad[range.start as usize..range.end as usize],
                    &mut out
                )
                .is_err());
        }
    }
    // A flipped header byte fails the header, whether it reaches `new` or only part 0.
    let mut bad = sealed.clone();
    bad[30] ^= 1;
    assert!(decrypt_parts(&bad, &setup.keys(), PART as u64, None).is_err());
    let first = layout.ciphertext_range(0);
    let p = layout.plaintext_range(0);
    let mut out = vec![0u8; (p.end - p.start) as usize];
    assert!(matches!(
        parts.open_part(0, &bad[..first.end as usize], &mut out),
        Err(CryptoError::HeaderDamaged)
    ));
    let mut plain = vec![0u8; layout.plaintext_len() as usize];
    assert!(parts.decrypt(&bad, &mut plain, None).is_err());
}

#[test]
fn truncation_at_a_part_boundary_fails() {
    let setup = Setup::new();
    let data = plaintext(4 * PART + 99, 5);
    let (sealed, summary) = setup
        .encryption()
        .encrypt_parts_to_vec(&data, PART as u64)
        .unwrap();
    let layout = summary.layout;
    for index in 0..layout.part_count() - 1 {
        let cut = &sealed[..layout.ciphertext_range(index).end as usize];
        let err = decrypt_parts(cut, &setup.keys(), PART as u64, None).unwrap_err();
        let chunks = layout.plaintext_range(index).end / CHUNK_SIZE as u64;
        assert!(
            matches!(err, CryptoError::PayloadTruncated { chunk } if chunk == chunks),
            "cut after part {index}: {err:?}"
        );
        // The serial decryptor agrees.
        let mut out = Vec::new();
        assert!(decrypt(cut, &mut out, &setup.keys()).is_err());
    }
    // Cut inside a chunk, and with the whole payload gone.
    let mid = layout.ciphertext_range(1).start as usize + 100;
    assert!(decrypt_parts(&sealed[..mid], &setup.keys(), PART as u64, None).is_err());
    let header_only = &sealed[..layout.header_len() as usize];
    assert!(matches!(
        decrypt_parts(header_only, &setup.keys(), PART as u64, None),
        Err(CryptoError::PayloadTruncated { chunk: 0 })
    ));
}

#[test]
fn the_keyed_digest_is_checked_and_does_not_depend_on_the_part_size() {
    let setup = Setup::new();
    let data = plaintext(7 * CHUNK_SIZE + 5, 9);
    let (sealed, summary) = setup
        .encryption()
        .encrypt_parts_to_vec(&data, PART as u64)
        .unwrap();
    for part_size in [CHUNK_SIZE, 4 * CHUNK_SIZE, 64 * CHUNK_SIZE] {
        let (_, other) = decrypt_parts(&sealed, &setup.keys(), part_size as u64, None).unwrap();
        assert_eq!(other.keyed_digest, summary.keyed_digest);
    }
    let mut wrong = summary.keyed_digest;
    wrong[0] ^= 1;
    assert!(matches!(
        decrypt_parts(&sealed, &setup.keys(), PART as u64, Some(&wrong)),
        Err(CryptoError::DigestMismatch)
    ));
    assert!(summary.verify(&wrong).is_err());
    summary.verify(&summary.keyed_digest).unwrap();

    // Another file key, same plaintext: another digest (the server cannot test a guess).
    let (_, other) = Setup::new()
        .encryption()
        .encrypt_parts_to_vec(&data, PART as u64)
        .unwrap();
    assert_ne!(other.keyed_digest, summary.keyed_digest);
}

#[test]
fn parts_can_be_sealed_one_at_a_time_and_checked_before_a_resume() {
    let setup = Setup::new();
    let data = plaintext(3 * PART + 10, 1);
    let enc = setup.encryption();
    let layout = enc.part_layout(data.len() as u64, PART as u64).unwrap();
    let mut sealed = vec![0u8; layout.ciphertext_len() as usize];
    let mut digests = Vec::new();
    // Out of order, as a multipart upload may send them.
    for index in (0..layout.part_count()).rev() {
        let p = layout.plaintext_range(index);
        let c = layout.ciphertext_range(index);
        let plain = &data[p.start as usize..p.end as usize];
        let d = enc
            .seal_part(
                &layout,
                index,
                plain,
                &mut sealed[c.start as usize..c.end as usize],
            )
            .unwrap();
        assert_eq!(enc.part_digest(&layout, index, plain).unwrap(), d);
        digests.push(d);
    }
    digests.reverse();
    let file_digest = enc.keyed_digest(&layout, &digests).unwrap();
    assert!(enc.keyed_digest(&layout, &digests[1..]).is_err());
    let (plain, summary) =
        decrypt_parts(&sealed, &setup.keys(), PART as u64, Some(&file_digest)).unwrap();
    assert!(plain == data);
    assert_eq!(summary.part_digests, digests);

    // And opened one part at a time, as a resumable download would.
    let parts =
        PartDecryption::new(&sealed, sealed.len() as u64, &setup.keys(), PART as u64).unwrap();
    let mut opened = Vec::new();
    let mut part_digests = Vec::new();
    for index in 0..layout.part_count() {
        let p = layout.plaintext_range(index);
        let c = layout.ciphertext_range(index);
        let mut out = vec![0u8; (p.end - p.start) as usize];
        part_digests.push(
            parts
                .open_part(index, &sealed[c.start as usize..c.end as usize], &mut out)
                .unwrap(),
        );
        opened.extend_from_slice(&out);
    }
    assert!(opened == data);
    assert_eq!(parts.keyed_digest(&part_digests).unwrap(), file_digest);

    // A part whose plaintext changed no longer matches its digest.
    let mut changed = data[..PART].to_vec();
    changed[5] ^= 1;
    assert_ne!(enc.part_digest(&layout, 0, &changed).unwrap(), digests[0]);
    // Wrong sizes are refused, as are bad part sizes.
    assert!(enc.part_digest(&layout, 0, &data[..10]).is_err());
    assert!(matches!(
        enc.part_layout(5, 3 * CHUNK_SIZE as u64),
        Err(CryptoError::InvalidPartSize { .. })
    ));
}

#[test]
fn a_declared_length_is_enforced() {
    let setup = Setup::new();
    let err = setup
        .encryption()
        .expect_plaintext_len(10)
        .encrypt_parts_to_vec(&[0u8; 11], PART as u64)
        .unwrap_err();
    assert!(matches!(err, CryptoError::LengthMismatch { .. }));
}

/// A resumed upload reopens its header with the account key and must seal the parts it
/// has not sent yet exactly as the first run would have: same bytes, same digests.
#[test]
fn a_reopened_header_seals_the_same_parts_as_the_first_run() {
    let setup = Setup::new();
    let plain = plaintext(5 * PART + 17, 3);
    let first = setup.encryption();
    let header = first.header().to_vec();
    let (whole, summary) = first.encrypt_parts_to_vec(&plain, PART as u64).unwrap();

    let again = Encryption::reopen(&header, &Keys::identity(setup.account.clone())).unwrap();
    let layout = again.part_layout(plain.len() as u64, PART as u64).unwrap();
    let mut digests = Vec::new();
    for index in 0..layout.part_count() {
        let p = layout.plaintext_range(index);
        let c = layout.ciphertext_range(index);
        let mut sealed = vec![0u8; (c.end - c.start) as usize];
        let digest = again
            .seal_part(
                &layout,
                index,
                &plain[p.start as usize..p.end as usize],
                &mut sealed,
            )
            .unwrap();
        assert_eq!(
            sealed,
            &whole[c.start as usize..c.end as usize],
            "part {index}"
        );
        digests.push(digest);
    }
    assert_eq!(
        again.keyed_digest(&layout, &digests).unwrap(),
        summary.keyed_digest
    );

    // Keys that do not open the header, or a header with anything after it, are refused.
    let stranger = Keys::identity(AgeIdentity::generate());
    assert!(Encryption::reopen(&header, &stranger).is_err());
    let mut longer = header.clone();
    longer.push(0);
    assert!(Encryption::reopen(&longer, &setup.keys()).is_err());
}

/// Sealing a part in place (each chunk's plaintext read straight into its sealed
/// position) gives the same bytes and digest as sealing it into a second buffer, for
/// every part of files at chunk and part boundaries, the empty file included.
#[test]
fn sealing_in_place_matches_sealing_into_a_second_buffer() {
    let setup = Setup::new();
    let enc = setup.encryption();
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        PART,
        PART + 1,
        3 * PART - 7,
    ] {
        let plain = plaintext(len, 9);
        let layout = enc.part_layout(len as u64, PART as u64).unwrap();
        for index in 0..layout.part_count() {
            let p = layout.plaintext_range(index);
            let c = layout.ciphertext_range(index);
            let part_plain = &plain[p.start as usize..p.end as usize];
            let mut expected = vec![0u8; (c.end - c.start) as usize];
            let digest = enc
                .seal_part(&layout, index, part_plain, &mut expected)
                .unwrap();
            let mut buf = vec![0xAAu8; expected.len()];
            let mut reads = 0;
            let read_in = enc
                .seal_part_reading(&layout, index, &mut buf, |offset, slot| {
                    reads += 1;
                    let at = (offset - p.start) as usize;
                    slot.copy_from_slice(&part_plain[at..at + slot.len()]);
                    Ok(())
                })
                .unwrap();
            assert_eq!(buf, expected, "len {len} part {index}");
            assert_eq!(read_in, digest, "len {len} part {index}");
            assert_eq!(
                reads,
                part_plain.len().div_ceil(CHUNK_SIZE).max(1),
                "one read per chunk"
            );
        }
    }
}

/// A read that fails stops the part with the reader's error, as an I/O error.
#[test]
fn a_failed_read_stops_the_part() {
    let setup = Setup::new();
    let enc = setup.encryption();
    let layout = enc.part_layout(3 * PART as u64, PART as u64).unwrap();
    let c = layout.ciphertext_range(1);
    let mut buf = vec![0u8; (c.end - c.start) as usize];
    let mut reads = 0;
    let err = enc
        .seal_part_reading(&layout, 1, &mut buf, |_, slot| {
            reads += 1;
            if reads == 2 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            slot.fill(7);
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, hashdrop_crypto::CryptoError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err:?}"
    );
    assert_eq!(reads, 2, "no read after the failed one");
}
