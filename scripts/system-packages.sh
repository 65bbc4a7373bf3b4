#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL server binaries and Chromium.
# Installs what is missing when it can (root, apt-get); otherwise says what to install.
set -uo pipefail
missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ! command -v redis-server >/dev/null 2>&1; then
  missing+=(redis-server)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "!!! apt-get install ${missing[*]} failed" >&2; exit 1; }
  # Debian starts services on install; the tests start their own servers.
  if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
else
  echo "!!! missing Debian packages: ${missing[*]} (install them as root)" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi
exit 0
