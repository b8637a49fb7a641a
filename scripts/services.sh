#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are
# up, starting them the way this machine kind starts them when they are not.
# Usage: scripts/services.sh ensure
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do
    port_open "$1" && return 0
    sleep 0.5
  done
  echo "service on port $1 did not come up" >&2
  return 1
}

ensure_postgres() {
  if port_open 5432; then echo "postgres: up"; return; fi
  echo "postgres: starting"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_port 5432
}

ensure_redis() {
  if port_open 6379; then echo "redis: up"; return; fi
  echo "redis: starting"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379
}

case "${1:-ensure}" in
  ensure) ensure_postgres; ensure_redis ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
