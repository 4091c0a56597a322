#!/usr/bin/env bash
# The test command behind `make test`: the whole suite on SQLite, then every test that touches
# the database again on a throw-away PostgreSQL server, and in CI (or with DRILLS=1) the bounded
# fault drills. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
mkdir -p test-artifacts

pg_url=""
if pg_url=$(scripts/test-postgres.sh start); then
  trap 'scripts/test-postgres.sh stop' EXIT
elif [ "${CI:-}" = "true" ]; then
  echo "error: PostgreSQL could not be started, and CI must test on it" >&2
  exit 1
else
  echo "warning: PostgreSQL is not available here; testing on SQLite only" >&2
fi

echo "== tests on SQLite =="
"$py" -m pytest "$@"
if [ -n "$pg_url" ]; then
  echo "== database tests on PostgreSQL =="
  TEST_DATABASE_URL="$pg_url" "$py" -m pytest -m db "$@"
fi
if [ "${CI:-}" = "true" ] || [ "${DRILLS:-}" = "1" ]; then
  # The drills start their own stacks (PostgreSQL included) on free ports: ~4 minutes.
  echo "== fault drills (python -m drills --quick) =="
  "$py" -m drills --quick
fi
