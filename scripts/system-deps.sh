#!/usr/bin/env bash
# System packages the test suite needs beyond the Python venv: the PostgreSQL server binaries
# (initdb, pg_ctl, postgres) for the sweep's distributed-storage test, which starts a throwaway
# server on a free loopback port (tests/conftest_postgres.py).
#
# Idempotent: does nothing when /usr/lib/postgresql/*/bin/pg_ctl exists. Otherwise installs
# Debian's `postgresql` package with apt-get (apt-get update first, only then). Needs root (or
# sudo); without either it warns and exits 0, and the PostgreSQL test is skipped with a reason.
set -euo pipefail

find_pg_ctl() {
    ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1
}

found="$(find_pg_ctl || true)"
if [ -n "$found" ]; then
    echo "system-deps: PostgreSQL server found ($found)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: WARNING: no /usr/lib/postgresql/*/bin/pg_ctl and no apt-get; install a PostgreSQL server" \
         "to run the sweep's PostgreSQL test (it is skipped otherwise)" >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "system-deps: WARNING: PostgreSQL is missing and installing it needs root: run" \
         "'sudo apt-get install postgresql' (the PostgreSQL test is skipped until then)" >&2
    exit 0
fi

echo "system-deps: installing Debian's postgresql (server binaries for the sweep tests) ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql
found="$(find_pg_ctl || true)"
if [ -z "$found" ]; then
    echo "system-deps: ERROR: postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl" >&2
    exit 1
fi
# Debian starts a cluster on port 5432 after installing; the tests start their own and need none.
echo "system-deps: PostgreSQL server installed ($found)"
