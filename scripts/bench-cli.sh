#!/usr/bin/env bash
# CLI throughput benchmark: upload then download+decrypt of a random file through the
# embedded hashdrop-server on loopback, next to curl moving the same bytes to and from
# the same server in the same run. Reports MB/s (10^6 bytes/s of plaintext) both ways
# and the peak RSS of client and server (GNU time -v).
#
# usage: scripts/bench-cli.sh [SIZE_MIB]        (default 1024)
# env:   RUNS=N repeats the four timed steps N times against one server (default 1),
#        deleting the stored files between runs, hashdrop's steps first in odd runs
#        and curl's first in even ones, and adds a row of medians; the ratios are
#        taken within each run, so every one of them is side by side.
#        CARGO_TARGET_DIR (default ./target), KEEP=1 keeps the work directory,
#        STORE=s3 puts the objects in an s3s-fs server on loopback (installed by
#        `scripts/cluster.sh install`) instead of the embedded local store: the CLI and
#        curl then move the bytes to and from s3s-fs through presigned URLs.
#        SERVER_BIN=path runs that hashdrop-server binary instead of this tree's (to
#        compare two servers side by side under the same CLI), CLI_BIN=path that
#        hashdrop binary (to compare two clients against the same server build).
#
# Notes on what is measured:
# - "upload" is the whole `hashdrop upload`: files above 16 MiB are cut into 8 MiB
#   parts sealed on both cores and sent 12 at a time (4 in memory), then complete
#   (which joins the parts into the object), and the vault update.
# - "download" is the whole `hashdrop decrypt --verify`: share facts, hash lookup,
#   download, decrypt to a temp file, fsync, rename.
# - curl PUTs the same number of bytes to a signed upload URL of the same server, and
#   GETs the stored object through the same download redirect, writing to a file.
# - scrypt is set to a small work factor (HASHDROP_SCRYPT_WORK_FACTOR=10) so the ~1 s
#   vault passphrase derivation does not distort a throughput number.
set -euo pipefail

SIZE_MIB=${1:-1024}
RUNS=${RUNS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-cli: $tool is required" >&2; exit 1; }
done

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p hashdrop-cli -p hashdrop-server)
CLI=${CLI_BIN:-$TARGET/release/hashdrop}
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
# The CLI's current access token (it refreshes the session as it goes).
access_token() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$WORK/home/session.json"; }

# Deletes stored file $1 and waits until the delete job has removed its object, so
# the next timed step finds memory as the one before did (a 4 GiB object left in the
# page cache makes every later write of the run reclaim memory first).
delete_stored() {
    local access
    access=$(access_token)
    curl -sf -X DELETE "$URL/api/files?id=$1" -H "Authorization: Bearer $access" >/dev/null
    for _ in $(seq 1 300); do
        [ -z "$(find "$WORK/data" "$WORK/s3" -type f -size +64M 2>/dev/null)" ] && break
        sleep 0.1
    done
}

# hashdrop's upload and download, each starting after a sync; sets t0..t3, c0, c1.
hashdrop_steps() {
    sync
    c0=$(srv_cpu); t0=$(now)
    /usr/bin/time -v -o "$WORK/up.time" "$CLI" --json upload "$WORK/input.bin" </dev/null > "$WORK/up.json"
    t1=$(now); c1=$(srv_cpu)
    local link file_id
    file_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["file_id"])' "$WORK/up.json")
    link=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["share_link"])' "$WORK/up.json")

    sync
    t2=$(now)
    /usr/bin/time -v -o "$WORK/down.time" "$CLI" decrypt "$link" "$WORK/output.bin" --verify </dev/null >/dev/null
    t3=$(now)
    cmp "$WORK/input.bin" "$WORK/output.bin" || { echo "roundtrip mismatch" >&2; exit 1; }
    rm -f "$WORK/output.bin"
    delete_stored "$file_id"
}

# curl: PUT the same bytes to a signed upload URL of the same server, then GET them
# back through the download redirect; sets t4..t9, c4, c5.
curl_steps() {
    local access presign put_url dl_url curl_id
    access=$(access_token)
    presign=$(curl -sf -X POST "$URL/api/files/presign" -H "Authorization: Bearer $access" \
        -H 'Content-Type: application/json' \
        -d "{\"file_name\":\"curl.bin\",\"plaintext_hash\":\"$(printf '0%.0s' $(seq 1 64))\",\"encrypted_size_bytes\":$BYTES,\"key_management_mode\":\"passphrase\"}")
    put_url=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["upload_resource"]["url"])' "$presign")
    curl_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["file_id"])' "$presign")
    sync
    c4=$(srv_cpu); t4=$(now)
    /usr/bin/time -v -o "$WORK/curl-up.time" curl -sf -T "$WORK/input.bin" "$put_url" -o /dev/null
    t5=$(now); c5=$(srv_cpu)
    curl -sf -X POST "$URL/api/files/complete" -H "Authorization: Bearer $access" \
        -H 'Content-Type: application/json' -d "{\"file_id\":\"$curl_id\"}" >/dev/null
    dl_url=$(curl -sf "$URL/api/share/$curl_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["download_url"])')
    sync
    t6=$(now)
    /usr/bin/time -v -o "$WORK/curl-down.time" curl -sf -L "$dl_url" -o "$WORK/curl-out.bin"
    t7=$(now)
    # Same, plus an fsync of the result: hashdrop fsyncs the plaintext before the rename
    # that publishes it, curl does not.
    rm -f "$WORK/curl-out.bin"
    sync
    t8=$(now)
    curl -sf -L "$dl_url" -o "$WORK/curl-out.bin" && sync "$WORK/curl-out.bin"
    t9=$(now)
    rm -f "$WORK/curl-out.bin"
    delete_stored "$curl_id"
}

# One run: hashdrop's steps and curl's, hashdrop first in odd runs and curl first in
# even ones (whichever writes first after other work pays the kernel's reclaim and
# compaction of memory, docs/BENCHMARKS.md). Appends one line of figures to
# $WORK/runs.tsv.
one_run() {
    local run=$1
    if [ $((run % 2)) = 1 ]; then hashdrop_steps; curl_steps; else curl_steps; hashdrop_steps; fi

    printf '%s\n' "$run $t0 $t1 $t2 $t3 $t4 $t5 $t6 $t7 $t8 $t9 $(python3 -c "print(f'{$c1-$c0:.2f} {$c5-$c4:.2f}')") $(cpu_s "$WORK/up.time") $(cpu_s "$WORK/curl-up.time") $(rss_mib "$WORK/up.time") $(rss_mib "$WORK/down.time") $(rss_mib "$WORK/curl-up.time") $(rss_mib "$WORK/curl-down.time")" >> "$WORK/runs.tsv"
    echo "run $run done" >&2
}

# Untimed: write and delete a file as large as the input, so that the first timed
# write finds memory the kernel has already made room in, as the later ones do.
head -c "$BYTES" /dev/zero > "$WORK/warm-up.bin" && sync && rm -f "$WORK/warm-up.bin"

for run in $(seq 1 "$RUNS"); do one_run "$run"; done

kill "$SERVER_PID" 2>/dev/null || true
wait "$TIME_PID" 2>/dev/null || true
SERVER_PID=""

echo "size: $SIZE_MIB MiB ($BYTES bytes), store: ${STORE:-local}, loopback, $(nproc) CPUs, $(uname -r), $RUNS run(s)"
python3 - "$WORK/runs.tsv" "$BYTES" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
size = int(sys.argv[2])
def rate(a, b): return size / (float(b) - float(a)) / 1e6
runs = []
for r in rows:
    t = r[1:11]
    runs.append(dict(
        run=r[0], up=rate(t[0], t[1]), down=rate(t[2], t[3]), cup=rate(t[4], t[5]),
        cdown=rate(t[6], t[7]), cdownsync=rate(t[8], t[9]),
        srv_up=float(r[11]), srv_cup=float(r[12]), cli_up=float(r[13]), cli_cup=float(r[14]),
        rss_up=r[15], rss_down=r[16], rss_cup=r[17], rss_cdown=r[18]))
print("| run | upload hashdrop / curl MB/s | upload ratio | download hashdrop / curl MB/s | download ratio | vs curl + fsync | server CPU s during the uploads, hashdrop / curl | client CPU s, hashdrop / curl | client peak RSS MiB up / down |")
print("|---|---|---|---|---|---|---|---|---|")
for x in runs:
    print(f"| {x['run']} | {x['up']:.0f} / {x['cup']:.0f} | {x['up']/x['cup']:.0%} | {x['down']:.0f} / {x['cdown']:.0f} | "
          f"{x['down']/x['cdown']:.0%} | {x['down']/x['cdownsync']:.0%} | {x['srv_up']:.2f} / {x['srv_cup']:.2f} | "
          f"{x['cli_up']:.1f} / {x['cli_cup']:.1f} | {x['rss_up']} / {x['rss_down']} |")
if len(runs) > 1:
    med = statistics.median
    print(f"| **median** | {med(x['up'] for x in runs):.0f} / {med(x['cup'] for x in runs):.0f} | "
          f"**{med(x['up']/x['cup'] for x in runs):.0%}** | {med(x['down'] for x in runs):.0f} / {med(x['cdown'] for x in runs):.0f} | "
          f"**{med(x['down']/x['cdown'] for x in runs):.0%}** | {med(x['down']/x['cdownsync'] for x in runs):.0%} | "
          f"{med(x['srv_up'] for x in runs):.2f} / {med(x['srv_cup'] for x in runs):.2f} | "
          f"{med(x['cli_up'] for x in runs):.1f} / {med(x['cli_cup'] for x in runs):.1f} | |")
print(f"curl peak RSS MiB (last run): up {runs[-1]['rss_cup']}, down {runs[-1]['rss_cdown']}")
PY
echo "server peak RSS MiB (whole run): $(rss_mib "$WORK/server.time"), CPU s (whole run): $(cpu_s "$WORK/server.time")"
