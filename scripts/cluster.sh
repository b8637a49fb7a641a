#!/usr/bin/env bash
# A scale-out Hashdrop fleet on this one machine, on ports of its own (never the
# machine's shared PostgreSQL/Redis, which other tests use):
#
#   clients ──> HAProxy :BASE (round robin, active checks on /api/readyz)
#                 ├─> hashdrop-server #1 :BASE+21 ┐
#                 ├─> hashdrop-server #2 :BASE+22 ├─> PostgreSQL primary :BASE+10
#                 └─> hashdrop-server #N :BASE+2N ┘     └─ streaming replica :BASE+11
#                                                   Redis :BASE+12 (limits, cache)
#   clients ──presigned PUT/GET──> s3s-fs :BASE+2 (SigV4-checking S3 server)
#                                  HAProxy :BASE+3 in front of it, adding CORS
#   HAProxy stats (CSV at /stats;csv): :BASE+1
#
# Usage: scripts/cluster.sh COMMAND
#   install                 install what is missing (HAProxy, PostgreSQL, Redis, s3s-fs)
#   up                      install what is missing, start everything, wait until ready
#   down [--purge]          stop everything (--purge also deletes the cluster dir)
#   status                  one line per component; exit 1 if something is down
#   env                     shell exports for clients (HASHDROP_SERVER, ports, dir)
#   restart-instance I      graceful: SIGTERM, wait for exit, start, wait until ready
#   kill-instance I         SIGKILL, no drain
#   start-instance I | stop-instance I
#   stop SERVICE | start SERVICE      SERVICE: redis, s3, replica
#
# Knobs (environment):
#   HASHDROP_CLUSTER_DIR        state, logs, data   [/var/tmp/hashdrop-cluster]
#   HASHDROP_CLUSTER_BASE_PORT  first port          [18400]
#   HASHDROP_CLUSTER_INSTANCES  server instances    [3]
#   HASHDROP_SERVER_BIN         server binary       [built: cargo build --release]
#   HASHDROP_TOOLS_DIR          where s3s-fs is installed [/var/tmp/hashdrop-tools]
#   HASHDROP_CLUSTER_CONFIG     extra TOML appended to the shared server config
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${HASHDROP_CLUSTER_DIR:-/var/tmp/hashdrop-cluster}"
BASE="${HASHDROP_CLUSTER_BASE_PORT:-18400}"
N="${HASHDROP_CLUSTER_INSTANCES:-3}"
TOOLS="${HASHDROP_TOOLS_DIR:-/var/tmp/hashdrop-tools}"
S3S_VERSION="0.14.1"

PORT_LB=$BASE
PORT_STATS=$((BASE + 1))
PORT_S3=$((BASE + 2))
PORT_S3_CORS=$((BASE + 3))
PORT_PG=$((BASE + 10))
PORT_PG_REPLICA=$((BASE + 11))
PORT_REDIS=$((BASE + 12))
instance_port() { echo $((BASE + 20 + $1)); }

BUCKET="hashdrop"
S3_ACCESS_KEY="hashdrop-cluster"
S3_SECRET_KEY="hashdrop-cluster-secret-key"
DB_NAME="hashdrop"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT WHAT [SECONDS]
  local deadline=$((SECONDS + ${3:-30}))
  until port_open "$1"; do
    [ $SECONDS -lt $deadline ] || die "$2 did not open port $1 (see $DIR/*.log)"
    sleep 0.2
  done
}

wait_closed() { # PORT [SECONDS]
  local deadline=$((SECONDS + ${2:-30}))
  while port_open "$1"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

as_postgres() { runuser -u postgres -- "$@"; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# ---------------------------------------------------------------- installation

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [ -n "$d" ] && echo "$d"
}

install_missing() {
  local need=()
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  [ -n "$(pg_bin)" ] || need+=(postgresql)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing from Debian: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    log "installing s3s-fs $S3S_VERSION from crates.io into $TOOLS (takes a few minutes once)"
    CARGO_TARGET_DIR="${HASHDROP_TOOLS_TARGET_DIR:-/var/tmp/hashdrop-tools-target}" \
      cargo install --locked --quiet s3s-fs --version "$S3S_VERSION" --features binary \
      --root "$TOOLS"
  fi
}

server_bin() {
  if [ -n "${HASHDROP_SERVER_BIN:-}" ]; then
    [ -x "$HASHDROP_SERVER_BIN" ] || die "HASHDROP_SERVER_BIN=$HASHDROP_SERVER_BIN is not executable"
    echo "$HASHDROP_SERVER_BIN"
    return
  fi
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  if [ ! -x "$target/release/hashdrop-server" ]; then
    log "building hashdrop-server (release)"
    (cd "$ROOT" && cargo build --quiet --release -p hashdrop-server)
  fi
  echo "$target/release/hashdrop-server"
}

# ---------------------------------------------------------------- PostgreSQL

# PostgreSQL refuses to run as root: its data, socket and logs live under $DIR/pg,
# owned by the postgres user.
pg_start() { # DATADIR PORT NAME
  pid_alive "$1/postmaster.pid" && return 0
  as_postgres "$(pg_bin)/pg_ctl" -D "$1" -l "$DIR/pg/$3.log" -w -t 60 start >/dev/null ||
    die "$3 did not start (see $DIR/pg/$3.log)"
  wait_port "$2" "$3"
}

pg_stop() { # DATADIR
  [ -f "$1/postmaster.pid" ] || return 0
  as_postgres "$(pg_bin)/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

pg_primary_up() {
  local data="$DIR/pg/primary"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL primary on :$PORT_PG"
    install -d -o postgres -g postgres "$DIR/pg" "$DIR/pg/sock"
    install -d -o postgres -g postgres -m 0700 "$data"
    # --no-sync: a throwaway cluster need not pay for fsyncing every new file.
    as_postgres "$(pg_bin)/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
# hashdrop cluster
port = $PORT_PG
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/pg/sock'
wal_level = replica
max_wal_senders = 5
hot_standby = on
max_connections = 200
EOF
    echo "host replication postgres 127.0.0.1/32 trust" >>"$data/pg_hba.conf"
  fi
  pg_start "$data" "$PORT_PG" primary
  if ! as_postgres "$(pg_bin)/psql" -h 127.0.0.1 -p "$PORT_PG" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    as_postgres "$(pg_bin)/createdb" -h 127.0.0.1 -p "$PORT_PG" -U postgres "$DB_NAME"
  fi
}

pg_replica_up() {
  local data="$DIR/pg/replica"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "cloning the streaming replica on :$PORT_PG_REPLICA"
    install -d -o postgres -g postgres -m 0700 "$data"
    # -R writes standby.signal and primary_conninfo: the clone follows the primary.
    as_postgres "$(pg_bin)/pg_basebackup" -h 127.0.0.1 -p "$PORT_PG" -U postgres \
      -D "$data" -R -X stream -c fast --no-sync >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
port = $PORT_PG_REPLICA
EOF
  fi
  pg_start "$data" "$PORT_PG_REPLICA" replica
}

# ---------------------------------------------------------------- Redis, S3

redis_up() {
  port_open "$PORT_REDIS" && return 0
  redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT_REDIS" --save "" \
    --appendonly no --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  wait_port "$PORT_REDIS" redis
}

redis_down() {
  pid_alive "$DIR/redis.pid" && kill "$(cat "$DIR/redis.pid")"
  wait_closed "$PORT_REDIS" 10 || true
}

s3_up() {
  port_open "$PORT_S3" && return 0
  mkdir -p "$DIR/s3/$BUCKET"
  setsid "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$PORT_S3" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$DIR/s3" \
    >>"$DIR/s3.log" 2>&1 </dev/null &
  echo $! >"$DIR/s3.pid"
  wait_port "$PORT_S3" s3s-fs
}

s3_down() {
  pid_alive "$DIR/s3.pid" && kill "$(cat "$DIR/s3.pid")"
  wait_closed "$PORT_S3" 10 || true
}

# ---------------------------------------------------------------- HAProxy

write_haproxy_cfg() {
  {
    cat <<EOF
# Generated by scripts/cluster.sh; deploy/haproxy/haproxy.cfg is the same design for
# the container deployments.
global
    maxconn 4096
    stats socket $DIR/haproxy.sock mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    # A request that could not reach an instance (refused, reset before a response)
    # is sent to another one instead of failing.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    # A fresh server-side connection per request: no keep-alive connection can be
    # reused at the instant an instance closes it during a rolling restart.
    option http-server-close
    # Appends the client's address as its own X-Forwarded-For line; the instances
    # believe only the entries added by this proxy (trusted_proxies below).
    option forwardfor

frontend api
    bind 127.0.0.1:$PORT_LB
    default_backend hashdrop

backend hashdrop
    balance roundrobin
    # Connect to the instances from an address no local client uses, so the
    # instances can tell the proxy (trusted) from a client (keyed by its address).
    source 127.0.0.2
    option httpchk GET /api/readyz
    http-check expect status 200
    # Checks twice a second: a draining instance (readyz 503) is out within ~1 s,
    # well inside its shutdown grace period.
    default-server inter 500ms fall 2 rise 2
EOF
    for i in $(seq 1 "$N"); do
      echo "    server i$i 127.0.0.1:$(instance_port "$i") check"
    done
    cat <<EOF

frontend stats
    bind 127.0.0.1:$PORT_STATS
    stats enable
    stats uri /stats
    stats refresh 5s

# Browsers download ciphertext straight from the object store; s3s-fs has no CORS,
# so this front adds it (the presigned signature still authorises each request).
frontend s3_cors
    bind 127.0.0.1:$PORT_S3_CORS
    http-request return status 204 hdr access-control-allow-origin "*" hdr access-control-allow-methods "GET, HEAD, PUT" hdr access-control-allow-headers "range, content-type, content-length" hdr access-control-max-age 3600 if METH_OPTIONS
    http-response set-header access-control-allow-origin "*"
    http-response set-header access-control-expose-headers "content-length, content-range, etag"
    default_backend s3

backend s3
    server s3 127.0.0.1:$PORT_S3
EOF
  } >"$DIR/haproxy.cfg"
}

haproxy_up() {
  pid_alive "$DIR/haproxy.pid" && return 0
  write_haproxy_cfg
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "invalid $DIR/haproxy.cfg"
  haproxy -D -f "$DIR/haproxy.cfg" -p "$DIR/haproxy.pid"
  wait_port "$PORT_LB" haproxy
}

haproxy_down() {
  pid_alive "$DIR/haproxy.pid" && kill "$(cat "$DIR/haproxy.pid")"
  wait_closed "$PORT_LB" 10 || true
}

# Server states as HAProxy sees them: "i1 UP", "i2 DOWN", ...
haproxy_servers() {
  curl -fsS "http://127.0.0.1:$PORT_STATS/stats;csv" 2>/dev/null |
    awk -F, '$1 == "hashdrop" && $2 ~ /^i[0-9]+$/ { print $2, $18 }'
}

wait_lb_state() { # INSTANCE STATE [SECONDS]
  local deadline=$((SECONDS + ${3:-30}))
  until haproxy_servers | grep -q "^i$1 $2"; do
    [ $SECONDS -lt $deadline ] || die "HAProxy never saw instance $1 as $2"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- instances

write_server_config() {
  if [ ! -f "$DIR/secrets.env" ]; then
    # Every instance must sign tokens and URLs with the same keys.
    umask 077
    {
      echo "HASHDROP_AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "HASHDROP_AUTH__HMAC_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } >"$DIR/secrets.env"
    umask 022
  fi
  cat >"$DIR/hashdrop.toml" <<EOF
# Shared by every instance; per-instance values come from the environment.
public_url = "http://127.0.0.1:$PORT_LB"
database_url = "postgres://postgres@127.0.0.1:$PORT_PG/$DB_NAME"
database_replica_url = "postgres://postgres@127.0.0.1:$PORT_PG_REPLICA/$DB_NAME"
blob_store = "s3://$BUCKET?endpoint=http://127.0.0.1:$PORT_S3&region=us-east-1&path_style=true"
trusted_proxies = ["127.0.0.2"]    # HAProxy's source address (see haproxy.cfg)
# Longer than HAProxy needs to see readyz fail (2 checks x 500 ms).
shutdown_grace_ms = 2000

[s3]
access_key_id = "$S3_ACCESS_KEY"
secret_access_key = "$S3_SECRET_KEY"
public_endpoint = "http://127.0.0.1:$PORT_S3_CORS"

[cache]
backend = "redis://127.0.0.1:$PORT_REDIS"

[rate_limit]
backend = "redis://127.0.0.1:$PORT_REDIS"
EOF
  if [ -n "${HASHDROP_CLUSTER_CONFIG:-}" ]; then
    printf '\n%s\n' "$HASHDROP_CLUSTER_CONFIG" >>"$DIR/hashdrop.toml"
  fi
}

instance_start() { # I
  local i=$1 port
  port="$(instance_port "$i")"
  pid_alive "$DIR/i$i.pid" && return 0
  mkdir -p "$DIR/i$i"
  (
    set -a
    # shellcheck disable=SC1091
    . "$DIR/secrets.env"
    set +a
    export HASHDROP_CONFIG="$DIR/hashdrop.toml" HASHDROP_LISTEN="127.0.0.1:$port" \
      HASHDROP_DATA_DIR="$DIR/i$i" HASHDROP_INSTANCE_ID="i$i" \
      RUST_LOG="${RUST_LOG:-info}"
    exec setsid "$(cat "$DIR/server-bin")" serve >>"$DIR/i$i.log" 2>&1 </dev/null
  ) &
  echo $! >"$DIR/i$i.pid"
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$port/api/readyz" >/dev/null 2>&1; do
    pid_alive "$DIR/i$i.pid" || die "instance $i exited (see $DIR/i$i.log)"
    [ $SECONDS -lt $deadline ] || die "instance $i not ready after 60 s (see $DIR/i$i.log)"
    sleep 0.2
  done
}

instance_stop() { # I [SIGNAL]
  local i=$1 sig=${2:-TERM}
  pid_alive "$DIR/i$i.pid" || return 0
  local pid
  pid="$(cat "$DIR/i$i.pid")"
  kill -s "$sig" "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL "$pid" 2>/dev/null; break; }
    sleep 0.1
  done
  rm -f "$DIR/i$i.pid"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  mkdir -p "$DIR"
  chmod 0755 "$DIR"
  install_missing
  server_bin >"$DIR/server-bin"
  pg_primary_up
  pg_replica_up
  redis_up
  s3_up
  write_server_config
  for i in $(seq 1 "$N"); do instance_start "$i"; done
  haproxy_up
  for i in $(seq 1 "$N"); do wait_lb_state "$i" UP; done
  log "up: http://127.0.0.1:$PORT_LB ($N instances; stats http://127.0.0.1:$PORT_STATS/stats)"
}

cmd_down() {
  [ -d "$DIR" ] || return 0
  haproxy_down
  for f in "$DIR"/i*.pid; do
    [ -e "$f" ] || continue
    local i=${f##*/i}
    instance_stop "${i%.pid}"
  done
  s3_down
  redis_down
  pg_stop "$DIR/pg/replica"
  pg_stop "$DIR/pg/primary"
  if [ "${1:-}" = "--purge" ]; then
    rm -rf "$DIR"
    log "down; $DIR removed"
  else
    log "down (data kept in $DIR; --purge removes it)"
  fi
}

cmd_status() {
  local bad=0
  line() { # NAME DETAIL COMMAND...: prints up/DOWN by the command's success
    local name=$1 detail=$2 state=up
    shift 2
    "$@" || { state=DOWN; bad=1; }
    printf '%-10s %-5s %s\n' "$name" "$state" "$detail"
  }
  line postgres "primary 127.0.0.1:$PORT_PG" port_open "$PORT_PG"
  line replica "streaming replica 127.0.0.1:$PORT_PG_REPLICA" port_open "$PORT_PG_REPLICA"
  line redis "127.0.0.1:$PORT_REDIS" port_open "$PORT_REDIS"
  line s3 "s3s-fs 127.0.0.1:$PORT_S3 (CORS front :$PORT_S3_CORS)" port_open "$PORT_S3"
  line haproxy "http://127.0.0.1:$PORT_LB" port_open "$PORT_LB"
  local states
  states="$(haproxy_servers || true)"
  for i in $(seq 1 "$N"); do
    local port ready lb
    port="$(instance_port "$i")"
    ready="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/readyz" || true)"
    lb="$(echo "$states" | awk -v s="i$i" '$1 == s { print $2 }')"
    line "i$i" "127.0.0.1:$port readyz=$ready haproxy=${lb:-?}" test "$ready" = 200
  done
  return $bad
}

cmd_env() {
  cat <<EOF
export HASHDROP_SERVER=http://127.0.0.1:$PORT_LB
export HASHDROP_CLUSTER_DIR=$DIR
export HASHDROP_CLUSTER_STATS=http://127.0.0.1:$PORT_STATS/stats
export HASHDROP_CLUSTER_PG=postgres://postgres@127.0.0.1:$PORT_PG/$DB_NAME
export HASHDROP_CLUSTER_REDIS=redis://127.0.0.1:$PORT_REDIS
export HASHDROP_CLUSTER_S3=http://127.0.0.1:$PORT_S3
export HASHDROP_CLUSTER_INSTANCES=$N
EOF
}

need_instance() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$N" ] ||
    die "instance number 1..$N expected, got '${1:-}'"
}

# Sourcing the file (for debugging one function) defines everything, runs nothing.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

case "${1:-}" in
  install) install_missing ;;
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  restart-instance)
    need_instance "${2:-}"
    instance_stop "$2" TERM
    instance_start "$2"
    wait_lb_state "$2" UP
    ;;
  kill-instance) need_instance "${2:-}"; instance_stop "$2" KILL ;;
  stop-instance) need_instance "${2:-}"; instance_stop "$2" TERM ;;
  start-instance) need_instance "${2:-}"; instance_start "$2"; wait_lb_state "$2" UP ;;
  stop | start)
    case "${2:-}:$1" in
      redis:stop) redis_down ;;
      redis:start) redis_up ;;
      s3:stop) s3_down ;;
      s3:start) s3_up ;;
      replica:stop) pg_stop "$DIR/pg/replica" ;;
      replica:start) pg_start "$DIR/pg/replica" "$PORT_PG_REPLICA" replica ;;
      *) die "usage: $0 $1 redis|s3|replica" ;;
    esac
    ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
    ;;
esac
