//! 1 GiB through the encryption core, in memory, next to `openssl speed` and the stock
//! `age` command on the same data, in the same run.
//!
//! `cargo bench -p hashdrop-crypto --bench throughput` (HASHDROP_BENCH_MIB and
//! HASHDROP_BENCH_RUNS change the size and the number of runs). Prints a Markdown table
//! of medians for docs/BENCHMARKS.md.

use std::io::{self, Read, Write};
use std::time::Instant;

use hashdrop_crypto::{
    decrypt, decrypt_with, encrypt, AgeIdentity, Keys, PlainDigest, Recipients, SeekableDecryptor,
};

/// An endless-looking plaintext: one random MiB repeated, so producing it costs nothing.
struct Source {
    block: Vec<u8>,
    left: u64,
    at: usize,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(self.block.len() - self.at)
            .min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at = (self.at + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

mod common;
use common::{mb_per_s, median, openssl_speed, AgeCommand};

fn random_block() -> Vec<u8> {
    let mut block = vec![0u8; 1 << 20];
    openssl::rand::rand_bytes(&mut block).expect("random bytes");
    block
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let mib: u64 = std::env::var("HASHDROP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runs: usize = std::env::var("HASHDROP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let size = mib << 20;
    let block = random_block();
    let source = || Source {
        block: block.clone(),
        left: size,
        at: 0,
    };
    let (file_id, account_id) = (AgeIdentity::generate(), AgeIdentity::generate());
    let (file, account) = (file_id.to_recipient(), account_id.to_recipient());
    let recipients = Recipients::Vault {
        file: &file,
        account: &account,
    };

    let mut sealed = Vec::with_capacity(size as usize + (size as usize >> 10));
    encrypt(source(), &mut sealed, recipients).unwrap();
    let keys = Keys::identity(file_id.clone());

    // The same data on disk (page cache) for the `age` command.
    let dir = tempfile::tempdir().unwrap();
    let age = AgeCommand::new(dir.path(), &file_id, source(), &sealed);

    // Rounds interleave every contender, so a noisy neighbour slows all of them alike.
    let (mut enc_runs, mut dec_runs, mut range_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut dec_sha_runs = Vec::new();
    let (mut age_enc, mut age_dec) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        encrypt(source(), io::sink(), recipients).unwrap();
        enc_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));

        let start = Instant::now();
        decrypt(&sealed[..], io::sink(), &keys).unwrap();
        dec_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));

        // What checking a file uploaded before the keyed digest costs.
        let start = Instant::now();
        decrypt_with(&sealed[..], io::sink(), &keys, PlainDigest::Sha256).unwrap();
        dec_sha_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));

        // The range reader authenticates and decrypts but does not hash: the AEAD alone.
        let start = Instant::now();
        let mut ranges = SeekableDecryptor::new(io::Cursor::new(&sealed), &keys).unwrap();
        ranges.read_range(0, size, io::sink()).unwrap();
        range_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));

        age.round(size, &mut age_enc, &mut age_dec);
    }
    drop(sealed);
    let openssl = openssl_speed("chacha20-poly1305", "ChaCha20-Poly1305", 3);
    let openssl_sha = openssl_speed("sha256", "sha256", 3);

    let enc = median(enc_runs);
    let dec = median(dec_runs);
    let dec_sha = median(dec_sha_runs);
    let range = median(range_runs);
    let ratio = |x: f64| openssl.map_or("n/a".to_string(), |o| format!("{:.0}%", 100.0 * x / o));
    let of_sha =
        |x: f64| openssl_sha.map_or("n/a".to_string(), |s| format!("{:.0}%", 100.0 * x / s));
    let mut rows: Vec<(String, f64)> = Vec::new();
    if let Some(o) = openssl {
        rows.push((
            "openssl speed -evp chacha20-poly1305 -bytes 65536 (one core, no hash)".into(),
            o,
        ));
    }
    if let Some(sha) = openssl_sha {
        rows.push((
            "openssl speed -evp sha256 -bytes 65536 (one core): bound for anything that hashes"
                .into(),
            sha,
        ));
    }
    rows.push((
        "hashdrop range decrypt of the whole file (AEAD only, no hash)".into(),
        range,
    ));
    rows.push(("hashdrop encrypt + keyed BLAKE3 (new uploads)".into(), enc));
    rows.push(("hashdrop decrypt + keyed BLAKE3 (new uploads)".into(), dec));
    rows.push(("hashdrop decrypt + SHA-256 (older uploads)".into(), dec_sha));
    let (age_e, age_d) = (
        (!age_enc.is_empty()).then(|| median(age_enc)),
        (!age_dec.is_empty()).then(|| median(age_dec)),
    );
    if let (Some(e), Some(d)) = (age_e, age_d) {
        rows.push(("age -r (encrypt, no hash)".into(), e));
        rows.push(("age -d (decrypt, no hash)".into(), d));
    }

    let mut out = io::stdout().lock();
    let mut report = format!(
        "\n{mib} MiB streamed through memory, median of {runs} runs (MB/s = 10^6 bytes/s)\n\n\
         | what | MB/s | vs openssl chacha20-poly1305 | vs openssl sha256 |\n\
         |---|---:|---:|---:|\n"
    );
    for (what, mbs) in rows {
        report += &format!("| {what} | {mbs:.0} | {} | {} |\n", ratio(mbs), of_sha(mbs));
    }
    if let (Some(c), Some(s)) = (openssl, openssl_sha) {
        report += &format!(
            "\nopenssl doing both jobs on one core would reach 1/(1/{c:.0} + 1/{s:.0}) = {:.0} MB/s; \
             hashdrop encrypt+digest is {:.2}x that\n",
            1.0 / (1.0 / c + 1.0 / s),
            enc * (1.0 / c + 1.0 / s)
        );
    }
    match (age_e, age_d) {
        (Some(e), Some(d)) => {
            report += &format!(
                "\nhashdrop / age command: encrypt {:.2}x, decrypt {:.2}x\n",
                enc / e,
                dec / d
            )
        }
        _ => report += "\n(the age command is not installed: apt-get install age)\n",
    }
    let _ = out.write_all(report.as_bytes());
}
