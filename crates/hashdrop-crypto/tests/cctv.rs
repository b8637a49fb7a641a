//! The C2SP CCTV age test vectors, run through our decrypt path.
//!
//! Each vector names an expected outcome; we check that our error kind maps onto it,
//! and that whatever plaintext we released before failing hashes to the vector's
//! `payload`. Vectors for features we do not support are skipped and counted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hashdrop_crypto::{decrypt, AgeIdentity, CryptoError, Keys, Passphrase};
use sha2::{Digest, Sha256};

fn vectors_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HASHDROP_AGE_VECTORS") {
        return PathBuf::from(dir);
    }
    // Kept in the repository (tests/vectors/README.md says where they come from), so
    // a fresh clone runs them with nothing beside it.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/age-cctv")
}

struct Vector {
    name: String,
    meta: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
}

impl Vector {
    fn load(path: &Path) -> Vector {
        let raw = std::fs::read(path).unwrap();
        let split = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("vector has a header block");
        let mut meta: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in std::str::from_utf8(&raw[..split]).unwrap().lines() {
            let (k, v) = line.split_once(": ").expect("key: value");
            meta.entry(k.to_string()).or_default().push(v.to_string());
        }
        let mut body = raw[split + 2..].to_vec();
        if meta.get("compressed").is_some_and(|v| v[0] == "zlib") {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&body[..])
                .read_to_end(&mut out)
                .unwrap();
            body = out;
        }
        Vector {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            meta,
            body,
        }
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(|v| v[0].as_str())
    }

    /// The keys to try, or the reason we cannot run this vector.
    fn keys(&self) -> Result<Keys, String> {
        if let Some(p) = self.one("passphrase") {
            return Ok(Keys::Passphrase {
                passphrase: Passphrase::new(p.to_string()),
                // The vectors use work factor 10; 2^23 must be refused (header failure).
                max_work_factor: 22,
            });
        }
        let mut ids = Vec::new();
        for text in self.meta.get("identity").into_iter().flatten() {
            if text.starts_with("AGE-SECRET-KEY-PQ-1") {
                return Err("ML-KEM hybrid identities: not supported by the age crate 0.12".into());
            }
            ids.push(text.parse::<AgeIdentity>().map_err(|e| e.to_string())?);
        }
        Ok(Keys::Identities(ids))
    }
}

/// Which of our error kinds may stand for each CCTV outcome.
fn matches_expectation(expect: &str, outcome: &Result<(), CryptoError>) -> bool {
    use CryptoError as E;
    match (expect, outcome) {
        ("success", Ok(())) => true,
        ("no match", Err(E::NoMatchingKey)) => true,
        ("HMAC failure", Err(E::HeaderMacFailed)) => true,
        ("header failure", Err(E::HeaderDamaged | E::ExcessiveWork { .. })) => true,
        ("payload failure", Err(E::PayloadDamaged { .. } | E::PayloadTruncated { .. })) => true,
        // Broken armor is reported as such when the armor decoder notices, and as a
        // damaged header when the armor looked fine but its content is not an age file.
        ("armor failure", Err(E::ArmorDamaged | E::HeaderDamaged)) => true,
        _ => false,
    }
}

#[test]
fn cctv_age_vectors() {
    let dir = vectors_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("CCTV vectors not found at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        paths.len() > 100,
        "expected the full CCTV age suite in {}",
        dir.display()
    );

    let mut passed = 0;
    let mut skipped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &paths {
        let v = Vector::load(path);
        let expect = v.one("expect").expect("expect line").to_string();
        let keys = match v.keys() {
            Ok(k) => k,
            Err(why) => {
                skipped.entry(why).or_default().push(v.name.clone());
                continue;
            }
        };
        let mut released = Vec::new();
        let outcome = decrypt(&v.body[..], &mut released, &keys).map(|_| ());
        let mut problems = Vec::new();
        if !matches_expectation(&expect, &outcome) {
            problems.push(format!("expected {expect}, got {outcome:?}"));
        }
        match v.one("payload") {
            Some(hash) => {
                let got = hex::encode(Sha256::digest(&released));
                if got != hash {
                    problems.push(format!(
                        "released {} bytes hashing to {got}, vector says {hash}",
                        released.len()
                    ));
                }
            }
            None if !released.is_empty() => problems.push(format!(
                "released {} bytes, vector expects none",
                released.len()
            )),
            None => {}
        }
        if problems.is_empty() {
            passed += 1;
        } else {
            failures.push(format!("{}: {}", v.name, problems.join("; ")));
        }
    }

    let skip_count: usize = skipped.values().map(Vec::len).sum();
    // Written straight to stderr, past the test harness's capture, so every run shows
    // the counts.
    let mut report = format!(
        "CCTV age vectors: {passed} passed, {} failed, {skip_count} skipped\n",
        failures.len()
    );
    for (why, names) in &skipped {
        report += &format!("  skipped {} ({why}): {}\n", names.len(), names.join(", "));
    }
    std::io::stderr().write_all(report.as_bytes()).unwrap();
    assert!(
        failures.is_empty(),
        "CCTV failures:\n{}",
        failures.join("\n")
    );
    assert_eq!(passed + skip_count, paths.len());
}
