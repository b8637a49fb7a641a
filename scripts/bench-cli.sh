#!/usr/bin/env bash
# CLI throughput benchmark: upload then download+decrypt of a random file through the
# embedded hashdrop-server on loopback, next to curl moving the same bytes to and from
# the same server in the same run. Reports MB/s (10^6 bytes/s of plaintext) both ways
# and the peak RSS of client and server (GNU time -v).
#
# usage: scripts/bench-cli.sh [SIZE_MIB]        (default 1024)
# env:   CARGO_TARGET_DIR (default ./target), KEEP=1 keeps the work directory,
#        STORE=s3 puts the objects in an s3s-fs server on loopback (installed by
#        `scripts/cluster.sh install`) instead of the embedded local store: the CLI and
#        curl then move the bytes to and from s3s-fs through presigned URLs.
#        SERVER_BIN=path runs that hashdrop-server binary instead of this tree's (to
#        compare two servers side by side under the same CLI).
#
# Notes on what is measured:
# - "upload" is the whole `hashdrop upload`: files above 16 MiB are cut into 8 MiB
#   parts sealed on both cores and sent 4 at a time, then complete (which joins the
#   parts into the object), and the vault update.
# - "download" is the whole `hashdrop decrypt --verify`: share facts, hash lookup,
#   download, decrypt to a temp file, fsync, rename.
# - curl PUTs the same number of bytes to a signed upload URL of the same server, and
#   GETs the stored object through the same download redirect, writing to a file.
# - scrypt is set to a small work factor (HASHDROP_SCRYPT_WORK_FACTOR=10) so the ~1 s
#   vault passphrase derivation does not distort a throughput number.
set -euo pipefail

SIZE_MIB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-cli: $tool is required" >&2; exit 1; }
done

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p hashdrop-cli -p hashdrop-server)
CLI=$TARGET/release/hashdrop
SRV=${SERVER_BIN:-$TARGET/release/hashdrop-server}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hashdrop-bench.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "${S3_PID:-}" ]; then kill "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
BYTES=$((SIZE_MIB * 1024 * 1024))
LIMIT=$((BYTES * 4))

echo "writing $SIZE_MIB MiB of random data..." >&2
head -c "$BYTES" /dev/urandom > "$WORK/input.bin"
# Every timed step starts with nothing left to write back: otherwise the first one (the
# hashdrop upload) would share the disk with the writeback of this 4 GiB input file.
sync

S3_PID=""
if [ "${STORE:-local}" = s3 ]; then
    S3S=${HASHDROP_TOOLS_DIR:-/var/tmp/hashdrop-tools}/bin/s3s-fs
    [ -x "$S3S" ] || { echo "bench-cli: STORE=s3 needs s3s-fs: run scripts/cluster.sh install" >&2; exit 1; }
    S3_PORT=$(free_port)
    mkdir -p "$WORK/s3/bench"
    "$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key benchkey --secret-key benchsecret123 \
        "$WORK/s3" > "$WORK/s3.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.05; done
    export HASHDROP_BLOB_STORE="s3://bench?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1&path_style=true" \
        HASHDROP_S3__ACCESS_KEY_ID=benchkey HASHDROP_S3__SECRET_ACCESS_KEY=benchsecret123
fi

HASHDROP_RATE_LIMIT__ENABLED=false \
HASHDROP_LIMITS__FILE_MAX_BYTES=$LIMIT \
HASHDROP_LIMITS__USER_BYTES=$LIMIT \
HASHDROP_LIMITS__GLOBAL_BYTES=$LIMIT \
HASHDROP_LIMITS__UPLOAD_URL_TTL_SECS=3600 \
HASHDROP_LIMITS__DOWNLOAD_URL_TTL_SECS=3600 \
RUST_LOG=warn \
    /usr/bin/time -v -o "$WORK/server.time" \
    "$SRV" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --public-url "$URL" \
    > "$WORK/server.log" 2>&1 &
TIME_PID=$!
for _ in $(seq 1 600); do
    curl -sf "$URL/api/healthz" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -sf "$URL/api/healthz" >/dev/null || { echo "server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
SERVER_PID=$(pgrep -P "$TIME_PID" || true)

export HASHDROP_SERVER=$URL HASHDROP_HOME=$WORK/home HASHDROP_PASSWORD="bench password 1" \
    HASHDROP_VAULT_PASSWORD="bench vault 1" HASHDROP_SCRYPT_WORK_FACTOR=10 \
    HASHDROP_MAX_UPLOAD_BYTES=$LIMIT
EMAIL=bench@example.com
"$CLI" auth register --email $EMAIL </dev/null >/dev/null
for _ in $(seq 1 200); do ls "$WORK"/data/mail/*.eml >/dev/null 2>&1 && break; sleep 0.05; done
OTP=$(grep -ho 'code is: [0-9]\{6\}' "$WORK"/data/mail/*.eml | tail -1 | grep -o '[0-9]\{6\}')
HASHDROP_OTP=$OTP "$CLI" auth verify --email $EMAIL </dev/null >/dev/null
"$CLI" auth login --email $EMAIL </dev/null >/dev/null

now() { date +%s.%N; }
rss_mib() { awk -F: '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$1"; }
cpu_s() { awk -F: '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$1"; }
# The server's CPU seconds so far (user + system), to take the share of one step.
TICKS=$(getconf CLK_TCK)
srv_cpu() { awk -v t="$TICKS" '{printf "%.2f", ($14 + $15) / t}' "/proc/$SERVER_PID/stat"; }
rate() { python3 -c "print(f'{$BYTES/($2-$1)/1e6:.0f}')"; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

# hashdrop upload
sync
c0=$(srv_cpu); t0=$(now)
/usr/bin/time -v -o "$WORK/up.time" "$CLI" --json upload "$WORK/input.bin" </dev/null > "$WORK/up.json"
t1=$(now); c1=$(srv_cpu)
FILE_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["file_id"])' "$WORK/up.json")
LINK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["share_link"])' "$WORK/up.json")

# hashdrop decrypt
sync
t2=$(now)
/usr/bin/time -v -o "$WORK/down.time" "$CLI" decrypt "$LINK" "$WORK/output.bin" --verify </dev/null >/dev/null
t3=$(now)
cmp "$WORK/input.bin" "$WORK/output.bin" || { echo "roundtrip mismatch" >&2; exit 1; }
rm -f "$WORK/output.bin"

# curl: PUT the same bytes to a signed upload URL of the same server, then GET them
# back through the download redirect.
ACCESS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$WORK/home/session.json")
PRESIGN=$(curl -sf -X POST "$URL/api/files/presign" -H "Authorization: Bearer $ACCESS" \
    -H 'Content-Type: application/json' \
    -d "{\"file_name\":\"curl.bin\",\"plaintext_hash\":\"$(printf '0%.0s' $(seq 1 64))\",\"encrypted_size_bytes\":$BYTES,\"key_management_mode\":\"passphrase\"}")
PUT_URL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["upload_resource"]["url"])' "$PRESIGN")
CURL_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["file_id"])' "$PRESIGN")
sync
c4=$(srv_cpu); t4=$(now)
/usr/bin/time -v -o "$WORK/curl-up.time" curl -sf -T "$WORK/input.bin" "$PUT_URL" -o /dev/null
t5=$(now); c5=$(srv_cpu)
curl -sf -X POST "$URL/api/files/complete" -H "Authorization: Bearer $ACCESS" \
    -H 'Content-Type: application/json' -d "{\"file_id\":\"$CURL_ID\"}" >/dev/null
DL_URL=$(curl -sf "$URL/api/share/$CURL_ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["download_url"])')
sync
t6=$(now)
/usr/bin/time -v -o "$WORK/curl-down.time" curl -sf -L "$DL_URL" -o "$WORK/curl-out.bin"
t7=$(now)
# Same, plus an fsync of the result: hashdrop fsyncs the plaintext before the rename
# that publishes it, curl does not.
rm -f "$WORK/curl-out.bin"
sync
t8=$(now)
curl -sf -L "$DL_URL" -o "$WORK/curl-out.bin" && sync "$WORK/curl-out.bin"
t9=$(now)
rm -f "$WORK/curl-out.bin"

kill "$SERVER_PID" 2>/dev/null || true
wait "$TIME_PID" 2>/dev/null || true
SERVER_PID=""

UP=$(rate "$t0" "$t1"); DOWN=$(rate "$t2" "$t3"); CUP=$(rate "$t4" "$t5"); CDOWN=$(rate "$t6" "$t7")
CDOWNSYNC=$(rate "$t8" "$t9")
cat <<REPORT
size: $SIZE_MIB MiB ($BYTES bytes), store: ${STORE:-local}, loopback, $(nproc) CPUs, $(uname -r)
| direction | hashdrop MB/s | time s | curl MB/s | time s | hashdrop/curl | client peak RSS MiB |
|---|---|---|---|---|---|---|
| upload   | $UP | $(secs "$t0" "$t1") | $CUP | $(secs "$t4" "$t5") | $(python3 -c "print(f'{$UP/$CUP:.0%}')") | $(rss_mib "$WORK/up.time") |
| download | $DOWN | $(secs "$t2" "$t3") | $CDOWN | $(secs "$t6" "$t7") | $(python3 -c "print(f'{$DOWN/$CDOWN:.0%}')") | $(rss_mib "$WORK/down.time") |
download vs curl + fsync of its output: curl+fsync $CDOWNSYNC MB/s ($(secs "$t8" "$t9") s), hashdrop/curl+fsync $(python3 -c "print(f'{$DOWN/$CDOWNSYNC:.0%}')")
curl peak RSS MiB: up $(rss_mib "$WORK/curl-up.time"), down $(rss_mib "$WORK/curl-down.time")
server peak RSS MiB (whole run): $(rss_mib "$WORK/server.time"), CPU s (whole run): $(cpu_s "$WORK/server.time")
CPU s (user + system) during the uploads: hashdrop $(cpu_s "$WORK/up.time") + server $(secs "$c0" "$c1"); curl $(cpu_s "$WORK/curl-up.time") + server $(secs "$c4" "$c5")
REPORT
