#!/usr/bin/env bash
# Browser decryption benchmark: a vault-mode file uploaded with the real `hashdrop` CLI
# to a release-built hashdrop-server (embedded SQLite, temp dir, loopback), then in one
# run, interleaved rounds of
#   (a)  headless Chromium: fetch the share link's ciphertext, decrypt it with
#        web/src/crypto/parallel.ts — the recipient page's path: age-encryption opens the
#        header, the payload's chunks are opened by dedicated workers (libsodium WASM)
#        loaded from the server's own /web/decrypt-worker.js — into a discard sink,
#        through a test harness page (web/bench/harness.ts), not the page UI;
#   (a1) the same with web/src/crypto/stream-wasm.ts on one thread (the path the
#        service worker, which cannot start workers, takes);
#   (b)  the same browser fetching the same ciphertext into a discard sink;
#   every path drains its stream as the page's save picker does: through one reused
#   buffer (web/src/bytes.ts's drainInto, BYOB where the stream is a byte stream);
#   (c)  `hashdrop decrypt LINK OUT` of the same link;
# with medians over the rounds, plus the browser's peak memory growth during (a) and
# (a1): the summed RSS of every Chromium process (workers included), sampled from /proc
# every 50 ms, minus the sum just before the round. Then, in the same browser, the
# payload micro-benchmark: age-encryption's pure-JS STREAM vs stream-wasm vs the
# parallel workers vs libsodium's bare AEAD, 64 KiB chunks.
#
# MB/s are 10^6 bytes of plaintext per second for all of them (the ciphertext is 0.02%
# larger), so (a)/(b) is a ratio of times.
#
# usage: scripts/bench-web.sh [SIZE_MIB] [ROUNDS]        (defaults 1024, 3)
# env:   CARGO_TARGET_DIR (default ./target), CHROMIUM (default /usr/bin/chromium),
#        MICRO_MIB (default 64), KEEP=1 keeps the work directory.
set -euo pipefail

SIZE_MIB=${1:-1024}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export HASHDROP_TEST_CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
for tool in curl python3 node npm "$HASHDROP_TEST_CHROMIUM"; do
    command -v "$tool" >/dev/null || { echo "bench-web: $tool is required" >&2; exit 1; }
done

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p hashdrop-cli -p hashdrop-server)
CLI=$TARGET/release/hashdrop
SRV=$TARGET/release/hashdrop-server
[ -d "$ROOT/web/node_modules" ] || (cd "$ROOT/web" && npm ci --no-audit --no-fund >&2)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hashdrop-bench-web.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
BYTES=$((SIZE_MIB * 1024 * 1024))
LIMIT=$((BYTES * 4))

echo "writing $SIZE_MIB MiB of random data..." >&2
head -c "$BYTES" /dev/urandom > "$WORK/input.bin"

HASHDROP_RATE_LIMIT__ENABLED=false \
HASHDROP_LIMITS__FILE_MAX_BYTES=$LIMIT \
HASHDROP_LIMITS__USER_BYTES=$LIMIT \
HASHDROP_LIMITS__GLOBAL_BYTES=$LIMIT \
HASHDROP_LIMITS__UPLOAD_URL_TTL_SECS=3600 \
HASHDROP_LIMITS__DOWNLOAD_URL_TTL_SECS=3600 \
HASHDROP_LIMITS__DAILY_DOWNLOADS_PER_FILE=1000 \
RUST_LOG=warn \
    "$SRV" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --public-url "$URL" \
    > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    curl -sf "$URL/api/healthz" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -sf "$URL/api/healthz" >/dev/null || { echo "server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }

export HASHDROP_SERVER=$URL HASHDROP_HOME=$WORK/home HASHDROP_PASSWORD="bench password 1" \
    HASHDROP_VAULT_PASSWORD="bench vault 1" HASHDROP_SCRYPT_WORK_FACTOR=10 \
    HASHDROP_MAX_UPLOAD_BYTES=$LIMIT
EMAIL=bench@example.com
"$CLI" auth register --email $EMAIL </dev/null >/dev/null
for _ in $(seq 1 200); do ls "$WORK"/data/mail/*.eml >/dev/null 2>&1 && break; sleep 0.05; done
OTP=$(grep -ho 'code is: [0-9]\{6\}' "$WORK"/data/mail/*.eml | tail -1 | grep -o '[0-9]\{6\}')
HASHDROP_OTP=$OTP "$CLI" auth verify --email $EMAIL </dev/null >/dev/null
"$CLI" auth login --email $EMAIL </dev/null >/dev/null

echo "uploading (vault mode)..." >&2
"$CLI" --json upload "$WORK/input.bin" </dev/null > "$WORK/up.json"
LINK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["share_link"])' "$WORK/up.json")
case "$LINK" in *"#AGE-SECRET-KEY-1"*) ;; *) echo "share link carries no file key: $LINK" >&2; exit 1 ;; esac

# One check that the CLI's output is the input, outside the timed rounds.
"$CLI" decrypt "$LINK" "$WORK/check.bin" </dev/null >/dev/null
cmp "$WORK/input.bin" "$WORK/check.bin" || { echo "CLI roundtrip mismatch" >&2; exit 1; }
rm -f "$WORK/check.bin"

echo "running $ROUNDS interleaved rounds..." >&2
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_PLAINTEXT_BYTES=$BYTES node "$ROOT/web/bench/bench.mjs" --link "$LINK" --cli "$CLI" \
    --out "$WORK/output.bin" --rounds "$ROUNDS" --micro-mib "${MICRO_MIB:-64}" > "$WORK/result.json"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before the rounds: $LOAD_BEFORE; after: $LOAD_AFTER (other work on this machine slows every path)"

python3 - "$WORK/result.json" "$BYTES" "$SIZE_MIB" "$ROUNDS" <<'PY'
import json, os, statistics, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2]); mib = sys.argv[3]; rounds = sys.argv[4]
def rate(ms, size=n): return size / (ms / 1000) / 1e6
med = lambda xs: statistics.median(xs)
a = [rate(x["a"]["ms"]) for x in r["rounds"]]
a1 = [rate(x["a1"]["ms"]) for x in r["rounds"]]
b = [rate(x["b"]["ms"]) for x in r["rounds"]]
c = [rate(x["c"]["ms"]) for x in r["rounds"]]
growth = lambda k: [(x[k]["peak"] - x[k]["baseline"]) / 2**20 for x in r["rounds"]]
grow, grow1, growb = growth("a"), growth("a1"), growth("b")
base = [x["a"]["baseline"] / 2**20 for x in r["rounds"]]
fmt = lambda xs: ", ".join(f"{v:.0f}" for v in xs)
p = r["rounds"][0]["a"]["path"]
print(f"size: {mib} MiB ({n} bytes), {rounds} interleaved rounds, loopback, {os.cpu_count()} CPUs "
      f"(navigator.hardwareConcurrency {r['hardwareConcurrency']}), {os.uname().release}, Chromium {r['chromium']}")
print("| path | median MB/s | rounds MB/s |")
print("|---|---|---|")
print(f"| (a) Chromium fetch → parallel workers decrypt ({p['workers']} workers, {p['engine']}) → discard | {med(a):.0f} | {fmt(a)} |")
print(f"| (a1) Chromium fetch → stream-wasm decrypt on one thread → discard | {med(a1):.0f} | {fmt(a1)} |")
print(f"| (b) Chromium fetch → discard | {med(b):.0f} | {fmt(b)} |")
print(f"| (c) `hashdrop decrypt LINK OUT` | {med(c):.0f} | {fmt(c)} |")
print(f"(a)/(b): {med(a)/med(b):.0%} (target ≥ 50%: {'met' if med(a) >= 0.5*med(b) else 'NOT met'}); (a1)/(b): {med(a1)/med(b):.0%}")
print(f"browser RSS growth during (a), peak over baseline: median {med(grow):.0f} MiB, rounds {fmt(grow)} "
      f"(baseline {fmt(base)} MiB; target < 256 MiB: {'met' if max(grow) < 256 else 'NOT met'})")
print(f"browser RSS growth during (a1): median {med(grow1):.0f} MiB, rounds {fmt(grow1)}")
print(f"browser RSS growth during (b): median {med(growb):.0f} MiB, rounds {fmt(growb)}")
print(f"WebAssembly instances in the page: {r['wasmInstances']} (libsodium runs as WASM, not asm.js, when ≥ 1; "
      f"the workers report their own engine above)")
micro = {}
for m in r["micro"]:
    micro.setdefault(m["path"], []).append(rate(m["ms"], m["bytes"]))
names = {"js": "age-encryption Decrypter (pure-JS STREAM, @noble/ciphers)",
         "wasm": "stream-wasm decryptAge (libsodium WASM STREAM, one thread)",
         "parallel": "parallel decryptAge (workers, libsodium WASM; includes starting the workers)",
         "sodium-raw": "libsodium crypto_aead_chacha20poly1305_ietf_decrypt alone, one 64 KiB chunk in a loop"}
sizes = {m["bytes"] for m in r["micro"]}
print(f"\nmicro-benchmark in the same browser, {sizes.pop() // 2**20} MiB in memory, fed as 64 KiB pieces, medians of {len(micro['js'])}:")
print("| path | median MB/s | rounds MB/s |")
print("|---|---|---|")
for k in ("js", "wasm", "parallel", "sodium-raw"):
    print(f"| {names[k]} | {med(micro[k]):.0f} | {fmt(micro[k])} |")
PY
