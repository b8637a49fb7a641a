#!/usr/bin/env bash
# Requests/s of the download redirect through HAProxy with 1, 2 and 3 hashdrop-server
# instances on PostgreSQL + Redis + s3s-fs (scripts/cluster.sh), printed as a Markdown
# table. Every request is a real one: Redis rate-limit check, Redis cache lookup of
# the file, the atomic download counter on the PostgreSQL primary, a presigned URL.
# Two traffic shapes: "spread" over 64 files, and "hot" on one file, where every
# request updates the same counter row and waits for the lock the previous one holds.
#
# Usage: scripts/bench-fleet.sh [DURATION_SECS] [CONNECTIONS] [ROUNDS]
# Bounded: wrk targets 127.0.0.1 only, DURATION_SECS (default 10) per measurement,
# ROUNDS (default 3) rounds over 1, 2, 3 instances; the median per count is reported.
# The cluster lives in /var/tmp/hashdrop-cluster-bench on ports 18700+ and is removed
# at the end. Everything shares this machine's cores: see docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10}"
CONNS="${2:-32}"
ROUNDS="${3:-3}"
export HASHDROP_CLUSTER_DIR=/var/tmp/hashdrop-cluster-bench
export HASHDROP_CLUSTER_BASE_PORT=18700
export HASHDROP_CLUSTER_INSTANCES=3
export RUST_LOG=warn
LB="http://127.0.0.1:18700"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }

open='global_per_minute = 1000000000
per_key_per_minute = 1000000000'
HASHDROP_CLUSTER_CONFIG="[limits]
daily_downloads_per_file = 1000000000000
[auth]
argon2_m_cost_kib = 1024
argon2_t_cost = 1
[rate_limit.download]
$open
[rate_limit.auth]
$open
[rate_limit.otp]
$open
[rate_limit.upload]
$open
[rate_limit.file_meta]
$open"
export HASHDROP_CLUSTER_CONFIG

cleanup() { bash scripts/cluster.sh down --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
bash scripts/cluster.sh up

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# One user with one uploaded file.
email="bench@fleet.test"
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" "$LB/api/user/register"
otp=""
for _ in $(seq 1 100); do
  otp="$(grep -rhs -A20 "To: <$email>" "$HASHDROP_CLUSTER_DIR"/i*/mail/*.eml |
    grep -oE '\b[0-9]{6}\b' | head -n1 || true)"
  [ -n "$otp" ] && break
  sleep 0.1
done
[ -n "$otp" ] || { echo "no OTP mail" >&2; exit 1; }
curl -fsS -o /dev/null -X PATCH -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"otp\":\"$otp\"}" "$LB/api/user/verify"
token="$(curl -fsS -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"correct horse battery\"}" "$LB/api/user/login" |
  json '["access_token"]')"
# FILES uploaded files: "spread" traffic rotates over all of them, "hot" hits the
# first one only (every request then updates the same counter row).
FILES=64
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; cleanup' EXIT
hash="$(printf 'ab%.0s' $(seq 32))"
for n in $(seq 1 $FILES); do
  slot="$(curl -fsS -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"file_name\":\"b$n.bin\",\"plaintext_hash\":\"$hash\",\"encrypted_size_bytes\":5,\"key_management_mode\":\"vault\"}" \
    "$LB/api/files/presign")"
  file_id="$(json '["file_id"]' <<<"$slot")"
  curl -fsS -o /dev/null -X PUT --data-binary 12345 "$(json '["upload_resource"]["url"]' <<<"$slot")"
  curl -fsS -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"file_id\":\"$file_id\",\"plaintext_size_bytes\":1}" "$LB/api/files/complete"
  curl -fsS -H "authorization: Bearer $token" "$LB/api/files?id=$file_id" |
    json '[0]["download_url"]' >>"$WORK/urls"
done
download="$(head -n1 "$WORK/urls")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$download")" = 303 ] || {
  echo "download redirect does not answer 303" >&2
  exit 1
}
{
  echo "paths = {"
  sed -E 's|^https?://[^/]+(.*)$|  "\1",|' "$WORK/urls"
  echo "}"
  echo 'i = 0'
  echo 'request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end'
} >"$WORK/spread.lua"

measure() { # spread|hot -> "rps p99_ms non3xx"
  local out
  if [ "$1" = spread ]; then
    out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/spread.lua" "$LB")"
  else
    out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$download")"
  fi
  awk '
    /^Requests\/sec/ { rps = $2 }
    $1 == "99%" { v = $2; n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
      if (u == "us") n /= 1000; else if (u == "s") n *= 1000; p99 = n }
    /Non-2xx or 3xx/ { bad = $5 }
    END { printf "%.0f %.1f %d\n", rps, p99, bad }' <<<"$out"
}

use_instances() { # N: instances 1..N serving, the rest stopped
  for i in 1 2 3; do
    if [ "$i" -le "$1" ]; then
      bash scripts/cluster.sh start-instance "$i" >/dev/null
    else
      bash scripts/cluster.sh stop-instance "$i" >/dev/null
    fi
  done
  sleep 2 # HAProxy: two failed checks mark a stopped instance down
}

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for n in 1 2 3; do
    use_instances "$n"
    for kind in spread hot; do
      r="$(measure "$kind")"
      echo "round $round, $n instance(s), $kind: $r (req/s p99_ms non-3xx)" >&2
      results[$n-$kind]+="$r"$'\n'
    done
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "| instances | traffic | redirect req/s (median of $ROUNDS) | p99 ms (median) | non-3xx answers |"
echo "|---:|---|---:|---:|---:|"
for n in 1 2 3; do
  for kind in spread hot; do
    rows="${results[$n-$kind]}"
    rps="$(printf '%s' "$rows" | awk 'NF { print $1 }' | median)"
    p99="$(printf '%s' "$rows" | awk 'NF { print $2 }' | median)"
    bad="$(printf '%s' "$rows" | awk 'NF { s += $3 } END { print s + 0 }')"
    label="$FILES files"
    [ "$kind" = hot ] && label="1 file"
    echo "| $n | $label | $rps | $p99 | $bad |"
  done
done
echo
echo "cores: $(nproc); wrk -t2 -c$CONNS -d${DURATION}s; HAProxy, PostgreSQL, Redis and" \
  "every instance share these cores"
