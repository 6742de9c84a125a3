#!/usr/bin/env bash
# The operator console as static files for any web host, pointed at a deployment:
#   SUPABASE_URL=https://x.supabase.co ANON_KEY=... API_BASE=https://api.example.com \
#     bash scripts/console-dist.sh [out-dir]      (default: console-dist/)
# Copies index.html, app.js, style.css, the supabase-js UMD bundle from console/node_modules
# (npm ci when missing; no CDN) into vendor/, and writes config.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-console-dist}"
: "${SUPABASE_URL:?set SUPABASE_URL (the Supabase project URL)}"
: "${ANON_KEY:?set ANON_KEY (the project anon key)}"
API_BASE="${API_BASE:-$SUPABASE_URL}"
bundle=console/node_modules/@supabase/supabase-js/dist/umd/supabase.js
[ -f "$bundle" ] || (cd console && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p "$out/vendor"
cp console/index.html console/app.js console/style.css "$out/"
cp "$bundle" "$out/vendor/supabase.js"
python3 -c 'import json, sys; print(json.dumps({"supabaseUrl": sys.argv[1], "anonKey": sys.argv[2], "apiBase": sys.argv[3]}, indent=2))' \
  "$SUPABASE_URL" "$ANON_KEY" "$API_BASE" > "$out/config.json"
echo "console written to $out/ (config.json -> $API_BASE)"
