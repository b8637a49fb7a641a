#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document (/api/openapi.json) with
# Schemathesis: a hashdrop-server on a temporary data dir and a free port, a registered
# and verified user whose bearer token covers the authenticated operations, then a
# time-bounded run that fails on any 5xx answer or any response that does not match
# the documented status codes and schemas.
#
# Usage: scripts/fuzz-api.sh
#   HASHDROP_SERVER_BIN     server binary        [built: cargo build -p hashdrop-server]
#   HASHDROP_FUZZ_SECONDS   time budget          [120]
#   HASHDROP_FUZZ_SEED      Schemathesis seed    [random; printed, to replay a run]
#   HASHDROP_VENV           venv with Schemathesis [/var/tmp/hashdrop-venv]
#   HASHDROP_FUZZ_KEEP=1    keep the data dir (server log, mail, reports) afterwards
# Exit status: 0 clean, 1 failures found (or the server could not start).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=${HASHDROP_VENV:-/var/tmp/hashdrop-venv}
SECONDS_BUDGET=${HASHDROP_FUZZ_SECONDS:-120}
SEED=${HASHDROP_FUZZ_SEED:-$RANDOM$RANDOM}

die() { echo "fuzz-api: $*" >&2; exit 1; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "fuzz-api: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -n "${HASHDROP_SERVER_BIN:-}" ]; then
  BIN=$HASHDROP_SERVER_BIN
else
  cargo build --quiet -p hashdrop-server
  target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BIN=$target/debug/hashdrop-server
fi
[ -x "$BIN" ] || die "server binary $BIN is not executable"

DATA=$(mktemp -d /tmp/hashdrop-fuzz.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  if [ "${HASHDROP_FUZZ_KEEP:-}" = 1 ]; then
    echo "fuzz-api: kept $DATA"
  else
    rm -rf "$DATA"
  fi
}
trap cleanup EXIT

# Rate limits off: the fuzzer sends hundreds of requests a second from one address,
# and a wall of 429s would hide everything behind them. Cheap password hashing for the
# same reason. Everything else is the embedded default setup.
env -u HASHDROP_CONFIG -u HASHDROP_DATABASE_URL \
  HASHDROP_RATE_LIMIT__ENABLED=false \
  HASHDROP_AUTH__ARGON2_M_COST_KIB=1024 \
  HASHDROP_AUTH__ARGON2_T_COST=1 \
  RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" --listen "127.0.0.1:$PORT" --data-dir "$DATA/server" --public-url "$URL" \
  >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 200); do
  curl -fsS "$URL/api/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DATA/server.log" >&2; die "the server exited"; }
  sleep 0.1
done
curl -fsS "$URL/api/healthz" >/dev/null || die "the server did not become ready"

# A verified user: register, read the code from the log mailer's .eml, verify, log in.
EMAIL=fuzz@example.com
PASSWORD='fuzz password 1'
json() { python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' "$@"; }
curl -fsS -X POST "$URL/api/user/register" -H 'Content-Type: application/json' \
  -d "$(json email "$EMAIL" password "$PASSWORD")" >/dev/null
OTP=
for _ in $(seq 100); do
  OTP=$(cat "$DATA"/server/mail/*.eml 2>/dev/null | tr -d '\r' | grep -oE '\b[0-9]{6}\b' | tail -1 || true)
  [ -n "$OTP" ] && break
  sleep 0.1
done
[ -n "$OTP" ] || die "no verification mail under $DATA/server/mail"
curl -fsS -X PATCH "$URL/api/user/verify" -H 'Content-Type: application/json' \
  -d "$(json email "$EMAIL" otp "$OTP")" >/dev/null
TOKEN=$(curl -fsS -X POST "$URL/api/user/login" -H 'Content-Type: application/json' \
  -d "$(json email "$EMAIL" password "$PASSWORD")" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

echo "fuzz-api: schemathesis $SCHEMATHESIS_VERSION against $URL for ${SECONDS_BUDGET}s (seed $SEED)"
# DELETE /api/user (the only operation on that path) is left out: deleting the account
# would turn the rest of the run into 401s.
status=0
# Run from the data dir: Schemathesis keeps its replay cache in ./.schemathesis.
(cd "$DATA" && "$VENV/bin/schemathesis" run "$URL/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $TOKEN" \
  --exclude-path /api/user \
  --max-time "$SECONDS_BUDGET" \
  --seed "$SEED" \
  --workers 2 \
  --request-timeout 10 \
  --max-redirects 0 \
  --suppress-health-check all \
  --report junit,ndjson --report-dir "$DATA/report" \
  --no-color) \
  || status=$?

if grep -qiE 'panicked|thread .* panicked' "$DATA/server.log"; then
  echo "fuzz-api: the server log shows a panic:" >&2
  grep -iE -A3 'panicked' "$DATA/server.log" | head -20 >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz-api: FAILED (seed $SEED; HASHDROP_FUZZ_KEEP=1 keeps the server log and reports)" >&2
  exit 1
fi
echo "fuzz-api: no server errors, no schema violations"
