#!/usr/bin/env bash
# Encryption-core benchmark: 1 GiB through memory (encrypt+hash, decrypt+hash, AEAD
# alone) next to `openssl speed` and the `age` command; then the part-wise parallel
# encrypt+keyed BLAKE3 and decrypt+keyed BLAKE3 of 1 GiB in memory next to this
# machine's bound 2 / (1/C + 1/B) and the `age` command (benches/parallel.rs); then the
# peak memory of a 1 GiB streaming encrypt (ours and age's) from /usr/bin/time -v.
# HASHDROP_BENCH_RUNS sets the rounds of both benches.
# Usage: scripts/bench-crypto.sh [MiB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-1024}"
bash scripts/install-deps.sh >/dev/null

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
HASHDROP_BENCH_MIB="$mib" cargo bench -q -p hashdrop-crypto --bench throughput
echo "== load before the parallel bench: $(cut -d' ' -f1-3 /proc/loadavg)"
HASHDROP_BENCH_MIB="$mib" cargo bench -q -p hashdrop-crypto --bench parallel
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build -q --release -p hashdrop-crypto --example encrypt_stdin
target_dir="${CARGO_TARGET_DIR:-target}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
head -c "$((mib << 20))" /dev/urandom > "$tmp/plain"
age-keygen -o "$tmp/key.txt" 2>/dev/null
recipient="$(age-keygen -y "$tmp/key.txt")"

peak() { # prints "max RSS MiB, wall s" of a command reading $tmp/plain
  /usr/bin/time -v "$@" < "$tmp/plain" > /dev/null 2> "$tmp/time.txt"
  awk -F': ' '/Maximum resident/ {rss=$2} /Elapsed/ {wall=$2} END {printf "%.1f MiB peak RSS, %s wall\n", rss/1024, wall}' "$tmp/time.txt"
}
echo
echo "peak memory, ${mib} MiB streaming encrypt from a file to /dev/null:"
echo "- hashdrop (examples/encrypt_stdin): $(peak "$target_dir/release/examples/encrypt_stdin")"
echo "- age -r: $(peak age -r "$recipient")"
