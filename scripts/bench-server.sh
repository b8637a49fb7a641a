#!/usr/bin/env bash
# Load-tests hashdrop-server on loopback with wrk and prints a Markdown table:
# requests/s and p50/p99 latency for healthz, list (a user with 200 files) and the
# download redirect, on SQLite and (if reachable) PostgreSQL, plus the server's peak RSS.
#
# Usage: scripts/bench-server.sh [DURATION_SECS] [CONNECTIONS] [ROUNDS]
#   env: HASHDROP_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres;
#        set to "" to skip PostgreSQL), CARGO_TARGET_DIR (default /work/target-server),
#        HASHDROP_BENCH_BASELINE=PATH: a second hashdrop-server binary (an older build)
#        measured side by side: each round runs the baseline, then this tree's build,
#        on each backend, and a last table gives the medians over ROUNDS (default 1)
#        and the ratio new/baseline.
# Bounded: each run lasts DURATION_SECS (default 10) and targets 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10}"
CONNS="${2:-32}"
ROUNDS="${3:-1}"
BASELINE="${HASHDROP_BENCH_BASELINE:-}"
PG_ADMIN="${HASHDROP_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/postgres}"
export PGOPTIONS="--client-min-messages=warning"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-server}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk from Debian" >&2
  { apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } >/dev/null 2>&1 \
    || { echo "wrk is needed and could not be installed: apt-get install -y wrk" >&2; exit 1; }
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

# --workspace, as the README's build: the same features, so nothing is rebuilt twice.
cargo build --release -q --workspace
BINS=("new=$CARGO_TARGET_DIR/release/hashdrop-server")
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || { echo "baseline $BASELINE is not an executable" >&2; exit 1; }
  BINS=("baseline=$BASELINE" "${BINS[@]}")
fi
RESULTS=$(mktemp)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SERVER_PID=""
PG_DB=""
WORK=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
  rm -f "$RESULTS"
}
trap cleanup EXIT

# wrk prints latency percentiles with units; convert to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    printf "%.2f", n }'
}

run_wrk() { # name url [header]
  local name="$1" url="$2" hdr="${3:-}" out
  if [ -n "$hdr" ]; then
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "$hdr" "$url")
  else
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$url")
  fi
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errs=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out"); errs="${errs:-0}"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$BACKEND" "$LABEL" "$name" "$rps" "$p50" "$p99" "$errs"
  printf '%s\t%s\t%s\t%s\n' "$BACKEND" "$name" "$LABEL" "$rps" >>"$RESULTS"
}

bench_backend() { # backend database_url_or_empty label binary
  BACKEND="$1" LABEL="$3"
  local BIN="$4"
  WORK=$(mktemp -d)
  local port; port=$(free_port)
  local base="http://127.0.0.1:$port"
  cat >"$WORK/bench.toml" <<TOML
[rate_limit]
enabled = false
[limits]
daily_downloads_per_file = 1000000000
user_files = 100000
[jobs]
cleaners_enabled = false
[backup]
interval_secs = 0
TOML
  local args=(--config "$WORK/bench.toml" --listen "127.0.0.1:$port" --data-dir "$WORK/data")
  [ -n "$2" ] && args+=(--database-url "$2")
  HASHDROP_LOG=warn "$BIN" "${args[@]}" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do curl -sf "$base/api/healthz" >/dev/null && break; sleep 0.1; done

  local email="bench@example.com" pw="bench password 1"
  curl -sf -XPOST "$base/api/user/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$pw\"}" >/dev/null
  local otp=""
  for _ in $(seq 1 100); do
    otp=$(cat "$WORK"/data/mail/*.eml 2>/dev/null | sed -n 's/.*code is: \([0-9]\{6\}\).*/\1/p' | head -n1 || true)
    [ -n "$otp" ] && break; sleep 0.1
  done
  curl -sf -XPATCH "$base/api/user/verify" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"otp\":\"$otp\"}" >/dev/null
  local token
  token=$(curl -sf -XPOST "$base/api/user/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$pw\"}" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  local hash; hash=$(printf 'ab%.0s' $(seq 1 32))
  local file_id=""
  for i in $(seq 1 200); do
    local p url
    p=$(curl -sf -XPOST "$base/api/files/presign" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' \
      -d "{\"file_name\":\"f$i.bin\",\"plaintext_hash\":\"$hash\",\"encrypted_size_bytes\":64,\"key_management_mode\":\"vault\"}")
    file_id=$(sed -n 's/.*"file_id":"\([^"]*\)".*/\1/p' <<<"$p")
    url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' <<<"$p")
    head -c 64 /dev/zero | curl -sf -XPUT --data-binary @- "$url" >/dev/null
    curl -sf -XPOST "$base/api/files/complete" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' -d "{\"file_id\":\"$file_id\"}" >/dev/null
  done
  local dl
  dl=$(curl -sf "$base/api/files?id=$file_id" -H "authorization: Bearer $token" |
    sed -n 's/.*"download_url":"\([^"]*\)".*/\1/p')

  run_wrk "healthz" "$base/api/healthz"
  run_wrk "list (200 files)" "$base/api/files/all" "Authorization: Bearer $token"
  run_wrk "download redirect (303)" "$dl"
  local rss; rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status")
  printf '| %s | %s | peak server RSS (VmHWM) | %s MiB | | | |\n' "$BACKEND" "$LABEL" "$rss"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  rm -rf "$WORK"; WORK=""
}

echo "wrk -t2 -c$CONNS -d${DURATION}s, loopback, $(nproc) cores, $ROUNDS round(s), $(date -u +%Y-%m-%d)"
echo
echo "| backend | binary | endpoint | req/s | p50 ms | p99 ms | non-2xx/3xx |"
echo "|---|---|---|---|---|---|---|"
PG_OK=""
if [ -n "$PG_ADMIN" ] && psql "$PG_ADMIN" -qAtc 'select 1' >/dev/null 2>&1; then PG_OK=1; fi
for _ in $(seq 1 "$ROUNDS"); do
  for entry in "${BINS[@]}"; do
    label="${entry%%=*}" bin="${entry#*=}"
    bench_backend sqlite "" "$label" "$bin"
    if [ -n "$PG_OK" ]; then
      PG_DB="hashdrop_bench_$$"
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null
      psql "$PG_ADMIN" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
      bench_backend postgres "${PG_ADMIN%/*}/$PG_DB" "$label" "$bin"
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null; PG_DB=""
    fi
  done
done
[ -n "$PG_OK" ] || echo "| postgres | | skipped: $PG_ADMIN not reachable | | | | |"

# Medians per backend, endpoint and binary, and new/baseline.
echo
echo "| backend | endpoint | $(printf '%s median req/s | ' "${BINS[@]%%=*}")$([ -n "$BASELINE" ] && echo 'new/baseline |')"
echo "|---|---|$(printf -- '---|%.0s' "${BINS[@]}")$([ -n "$BASELINE" ] && echo '---|')"
python3 - "$RESULTS" "${BINS[@]%%=*}" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
labels = sys.argv[2:]
keys = []
for b, e, _, _ in rows:
    if (b, e) not in keys:
        keys.append((b, e))
for b, e in keys:
    med = {l: statistics.median(float(r[3]) for r in rows if r[:3] == [b, e, l]) for l in labels}
    cells = " | ".join(f"{med[l]:.0f}" for l in labels)
    ratio = f" {med['new'] / med['baseline']:.2f}x |" if "baseline" in med and med["baseline"] else ""
    print(f"| {b} | {e} | {cells} |{ratio}")
PY
