#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the test suite and print its URL on stdout.
# Usage: scripts/test-postgres.sh start|stop   (data in $CC_PG_DIR, default /tmp/cryptocity-pg)
set -euo pipefail
dir=${CC_PG_DIR:-/tmp/cryptocity-pg}
port=${CC_PG_PORT:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 3
fi
# PostgreSQL refuses to run as root; use the postgres account when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-start}" in
  start)
    if [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$dir" stop -m fast >/dev/null
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_pg "$bin/initdb" -D "$dir" -A trust -U cryptocity -E UTF8 >"$dir.initdb.log" 2>&1
    # fsync off: a test database that dies with the machine loses nothing we care about.
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" \
      start >/dev/null
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U cryptocity cryptocity_test
    echo "postgresql+psycopg://cryptocity@127.0.0.1:$port/cryptocity_test"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" stop -m fast >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
