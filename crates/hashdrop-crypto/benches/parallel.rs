//! 1 GiB in memory through the part-wise (parallel) encryption and decryption, each with
//! its keyed BLAKE3 digest, next to this machine's bound and the stock `age` command, all
//! measured in the same rounds.
//!
//! `cargo bench -p hashdrop-crypto --bench parallel` (HASHDROP_BENCH_MIB,
//! HASHDROP_BENCH_RUNS and HASHDROP_BENCH_PART_MIB change the size, the number of rounds
//! and the part size). The bound is two cores each splitting their time between
//! ChaCha20-Poly1305 and keyed BLAKE3: 2 / (1/C + 1/B), with C = `openssl speed -evp
//! chacha20-poly1305 -bytes 65536` (one core) and B = keyed BLAKE3 of one 64 KiB block
//! after another on one thread. Prints a Markdown table of medians.

use std::io;
use std::time::{Duration, Instant};

use hashdrop_crypto::{
    decrypt, encrypt, AgeIdentity, Encryption, Keys, PartDecryption, Recipients,
};

mod common;
use common::{mb_per_s, median, openssl_speed, AgeCommand};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// C: `openssl speed -evp chacha20-poly1305 -bytes 65536`, in MB/s.
fn openssl_chacha(seconds: u32) -> Option<f64> {
    openssl_speed("chacha20-poly1305", "ChaCha20-Poly1305", seconds)
}

/// B: keyed BLAKE3 of a 64 KiB block, again and again on this thread, in MB/s.
fn blake3_keyed_64k(block: &[u8], time: Duration) -> f64 {
    let key = [7u8; 32];
    let start = Instant::now();
    let mut n = 0u64;
    let mut sink = 0u8;
    while start.elapsed() < time {
        for _ in 0..64 {
            sink ^= blake3::keyed_hash(&key, std::hint::black_box(block)).as_bytes()[0];
        }
        n += 64;
    }
    std::hint::black_box(sink);
    mb_per_s(n * block.len() as u64, start.elapsed().as_secs_f64())
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the file (utime, stime) are 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mib = env_u64("HASHDROP_BENCH_MIB", 1024);
    let runs = env_u64("HASHDROP_BENCH_RUNS", 5) as usize;
    let part_size = env_u64("HASHDROP_BENCH_PART_MIB", 8) << 20;
    let size = mib << 20;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // 1 GiB of random bytes (one random MiB repeated: generating it costs nothing).
    let mut block = vec![0u8; 1 << 20];
    openssl::rand::rand_bytes(&mut block).expect("random bytes");
    let plaintext: Vec<u8> = block.iter().copied().cycle().take(size as usize).collect();

    let (file_id, account_id) = (AgeIdentity::generate(), AgeIdentity::generate());
    let (file, account) = (file_id.to_recipient(), account_id.to_recipient());
    let recipients = Recipients::Vault {
        file: &file,
        account: &account,
    };
    let keys = Keys::identity(file_id.clone());
    let new_encryption = || Encryption::new(recipients).unwrap();

    // Output buffers are allocated and touched once, outside the timings: the figures
    // are for the cryptography, not for the kernel handing out fresh pages.
    let (mut sealed, summary) = new_encryption()
        .encrypt_parts_to_vec(&plaintext, part_size)
        .unwrap();
    let expected = summary.keyed_digest;
    // age adds a random "grease" stanza, so the header length varies from file to file.
    let mut sealed_again = Vec::with_capacity(sealed.len() + 4096);
    sealed_again.extend_from_slice(&sealed);
    let mut opened = vec![1u8; size as usize];

    let dir = tempfile::tempdir().unwrap();
    let age = AgeCommand::new(dir.path(), &file_id, &plaintext[..], &sealed);

    // Every round runs every contender once, so a noisy neighbour slows them all alike.
    let mut c_runs = Vec::new();
    let mut b_runs = Vec::new();
    let (mut enc_runs, mut dec_runs) = (Vec::new(), Vec::new());
    // MB per CPU-second: what the code does per core while it runs, load or not.
    let (mut enc_cpu, mut dec_cpu) = (Vec::new(), Vec::new());
    let (mut serial_enc, mut serial_dec) = (Vec::new(), Vec::new());
    let (mut age_enc, mut age_dec) = (Vec::new(), Vec::new());
    let block64k = &plaintext[..65536];
    for round in 0..runs {
        if let Some(c) = openssl_chacha(2) {
            c_runs.push(c);
        }
        b_runs.push(blake3_keyed_64k(block64k, Duration::from_secs(2)));

        let enc = new_encryption();
        sealed_again.resize(enc.ciphertext_len(size) as usize, 0);
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let s = enc
            .encrypt_parts(&plaintext, part_size, &mut sealed_again)
            .unwrap();
        enc_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));
        enc_cpu.push(mb_per_s(size, cpu_seconds() - cpu));
        assert_eq!(s.layout.plaintext_len(), size);

        let (start, cpu) = (Instant::now(), cpu_seconds());
        let parts = PartDecryption::new(&sealed, sealed.len() as u64, &keys, part_size).unwrap();
        parts
            .decrypt(&sealed, &mut opened, Some(&expected))
            .unwrap();
        dec_runs.push(mb_per_s(size, start.elapsed().as_secs_f64()));
        dec_cpu.push(mb_per_s(size, cpu_seconds() - cpu));
        if round == 0 {
            assert!(opened == plaintext);
        }

        // The serial streaming paths (one core seals, the other digests), for reference.
        let start = Instant::now();
        encrypt(&plaintext[..], io::sink(), recipients).unwrap();
        serial_enc.push(mb_per_s(size, start.elapsed().as_secs_f64()));
        let start = Instant::now();
        decrypt(&sealed[..], io::sink(), &keys).unwrap();
        serial_dec.push(mb_per_s(size, start.elapsed().as_secs_f64()));

        age.round(size, &mut age_enc, &mut age_dec);
        eprintln!(
            "round {}: C {:.0} B {:.0} enc {:.0} ({:.0}/cpu-s) dec {:.0} ({:.0}/cpu-s) serial {:.0}/{:.0} age {:.0}/{:.0}",
            round + 1,
            c_runs.last().copied().unwrap_or(f64::NAN),
            b_runs.last().copied().unwrap_or(f64::NAN),
            enc_runs.last().unwrap(),
            enc_cpu.last().unwrap(),
            dec_runs.last().unwrap(),
            dec_cpu.last().unwrap(),
            serial_enc.last().unwrap(),
            serial_dec.last().unwrap(),
            age_enc.last().copied().unwrap_or(f64::NAN),
            age_dec.last().copied().unwrap_or(f64::NAN),
        );
    }
    drop(std::mem::take(&mut sealed));

    let b = median(b_runs);
    let enc = median(enc_runs);
    let dec = median(dec_runs);
    let mut report = format!(
        "\n{mib} MiB in memory, {threads} threads, parts of {} MiB, median of {runs} rounds \
         (MB/s = 10^6 bytes/s)\n\n| what | MB/s |\n|---|---:|\n",
        part_size >> 20
    );
    let c = (!c_runs.is_empty()).then(|| median(c_runs));
    let bound = c.map(|c| 2.0 / (1.0 / c + 1.0 / b));
    if let Some(c) = c {
        report += &format!(
            "| C: openssl speed -evp chacha20-poly1305 -bytes 65536 (one core) | {c:.0} |\n"
        );
    }
    report += &format!("| B: keyed BLAKE3, 64 KiB blocks, one thread | {b:.0} |\n");
    if let Some(bound) = bound {
        report += &format!("| bound 2 / (1/C + 1/B) | {bound:.0} |\n");
    }
    report += &format!("| hashdrop parallel encrypt + keyed BLAKE3 | {enc:.0} |\n");
    report += &format!("| hashdrop parallel decrypt + keyed BLAKE3 (verified) | {dec:.0} |\n");
    report += &format!(
        "| hashdrop serial encrypt + keyed BLAKE3 (streaming, for reference) | {:.0} |\n",
        median(serial_enc)
    );
    report += &format!(
        "| hashdrop serial decrypt + keyed BLAKE3 (streaming, for reference) | {:.0} |\n",
        median(serial_dec)
    );
    let ages =
        (!age_enc.is_empty() && !age_dec.is_empty()).then(|| (median(age_enc), median(age_dec)));
    if let Some((ae, ad)) = ages {
        report += &format!(
            "| age -r (file → /dev/null) | {ae:.0} |\n| age -d (file → /dev/null) | {ad:.0} |\n"
        );
    }
    report += "\n";
    if let Some(c) = c {
        let core = 1.0 / (1.0 / c + 1.0 / b);
        report += &format!(
            "per CPU-second (user+system time of all threads): encrypt {:.0}, decrypt {:.0} MB; \
             one core's share of the bound, 1 / (1/C + 1/B), is {core:.0}\n",
            median(enc_cpu),
            median(dec_cpu)
        );
    }
    if let Some(bound) = bound {
        report += &format!(
            "of the bound: encrypt {:.0}%, decrypt {:.0}% (target ≥ 80%)\n",
            100.0 * enc / bound,
            100.0 * dec / bound
        );
    }
    match ages {
        Some((ae, ad)) => {
            report += &format!(
                "vs the age command: encrypt {:.2}x, decrypt {:.2}x (target ≥ 1.8x)\n",
                enc / ae,
                dec / ad
            )
        }
        None => report += "(the age command is not installed: apt-get install age)\n",
    }
    print!("{report}");
}
