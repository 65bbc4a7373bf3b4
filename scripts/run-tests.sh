#!/usr/bin/env bash
# The whole test suite: once on SQLite, once on a throwaway PostgreSQL server.
# Usage: scripts/run-tests.sh [pytest args…]   (called by `make test`)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

pgdir=$(mktemp -d /tmp/reseller-pg.XXXXXX)
cleanup() { scripts/pg-temp.sh stop "$pgdir"; }
trap cleanup EXIT INT TERM

status=0
echo "=== lint (ruff) ==="
if ! .venv/bin/ruff check . || ! .venv/bin/ruff format --check . >/dev/null; then
  echo "!!! ruff found problems (make format fixes most)"; status=1
fi

echo "=== test suite on SQLite ==="
$PY -m pytest "$@"
rc=$?
[ $rc -ne 0 ] && status=$rc

echo "=== test suite on PostgreSQL ==="
port=$($PY scripts/free-port.py)
if url=$(scripts/pg-temp.sh start "$pgdir" "$port"); then
  echo "PostgreSQL running at $url"
  TEST_DATABASE_URL=$url $PY -m pytest "$@"
  rc=$?
  [ $rc -ne 0 ] && status=$rc
else
  echo "!!! PostgreSQL could not be started: the PostgreSQL suite did NOT run." >&2
  if [ "${CI:-}" = "true" ]; then status=1; fi
fi

if [ $status -eq 0 ]; then echo "=== SQLite and PostgreSQL suites passed ==="; else echo "=== FAILED (exit $status) ==="; fi
exit $status
