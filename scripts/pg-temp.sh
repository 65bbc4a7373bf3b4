#!/usr/bin/env bash
# A throwaway PostgreSQL server in a temporary directory.
#   scripts/pg-temp.sh start DIR PORT   → initdb + start, prints the database URL
#   scripts/pg-temp.sh stop DIR
# initdb refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?directory}

find_bin() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$found" ] && echo "$found"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=${3:-55432}
  initdb=$(find_bin initdb) || true
  pg_ctl=$(find_bin pg_ctl) || true
  if [ -z "${initdb:-}" ] || [ -z "${pg_ctl:-}" ]; then
    echo "!!! PostgreSQL server binaries (initdb, pg_ctl) not found." >&2
    echo "!!! Install them (Debian: apt-get install postgresql) to run the PostgreSQL suite." >&2
    exit 3
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  as_owner "$initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  pg_ctl=$(find_bin pg_ctl) || true
  if [ -d "$dir/data" ] && [ -n "${pg_ctl:-}" ]; then
    as_owner "$pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
