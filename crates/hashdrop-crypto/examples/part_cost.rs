//! What sealing and hashing one part costs per CPU-second of this thread (from
//! /proc/thread-self/schedstat, in ns), load or not: seal+hash vs hash alone, with the
//! data in DRAM (1 GiB) or in cache (8 MiB, 1 MiB). A diagnostic next to
//! benches/parallel.rs:
//! `cargo run --release -p hashdrop-crypto --example part_cost` (Linux only).
use hashdrop_crypto::{AgeIdentity, Encryption, Recipients};
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
fn main() {
    let f = AgeIdentity::generate().to_recipient();
    let a = AgeIdentity::generate().to_recipient();
    let enc = Encryption::new(Recipients::Vault {
        file: &f,
        account: &a,
    })
    .unwrap();
    for &(total_mib, part_mib) in &[(1024u64, 8u64), (8, 8), (1, 1)] {
        let size = total_mib << 20;
        let plain: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4099) as u8).collect();
        let layout = enc.part_layout(size, part_mib << 20).unwrap();
        let mut out = vec![1u8; layout.ciphertext_len() as usize];
        let reps = (1024 / total_mib).max(1);
        for mode in ["seal+hash", "hash only"] {
            let t = cpu_ns();
            for _ in 0..reps {
                for i in 0..layout.part_count() {
                    let p = layout.plaintext_range(i);
                    let c = layout.ciphertext_range(i);
                    let pl = &plain[p.start as usize..p.end as usize];
                    if mode == "seal+hash" {
                        enc.seal_part(&layout, i, pl, &mut out[c.start as usize..c.end as usize])
                            .unwrap();
                    } else {
                        enc.part_digest(&layout, i, pl).unwrap();
                    }
                }
            }
            let secs = (cpu_ns() - t) as f64 / 1e9;
            println!(
                "{total_mib} MiB data, {part_mib} MiB parts, {mode}: {:.0} MB per CPU-second",
                (reps * size) as f64 / secs / 1e6
            );
        }
    }
}
