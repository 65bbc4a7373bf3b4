#!/usr/bin/env bash
# Debian packages the benchmark needs: wrk (load), the PostgreSQL server binaries and
# redis-server (rate-limit counters, as in production). Installs what is missing when it
# can (root, apt-get); without wrk the benchmark cannot run, without the others it skips
# PostgreSQL or counts rate limits in memory and says so.
set -uo pipefail
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "!!! apt-get install ${missing[*]} failed" >&2
  # Debian starts services on install; the benchmark starts its own servers.
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service postgresql stop >/dev/null 2>&1 || true
  fi
fi
command -v wrk >/dev/null 2>&1 || { echo "!!! wrk is required: apt-get install wrk" >&2; exit 1; }
exit 0
