#!/usr/bin/env bash
# The whole test suite: lint, generated-spec freshness, template checks, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
export PATH="$PWD/.venv/bin:$PATH"

echo "==> ruff"
ruff check .
# mypy (the longest static check) runs alongside the spec and template checks
mypy_log="$(mktemp)"
trap 'rm -f "$mypy_log"' EXIT
mypy aef runner functions local > "$mypy_log" 2>&1 &
mypy_pid=$!
echo "==> OpenAPI spec is current (docs/openapi.json)"
python -m aef.openapi --check
echo "==> SAM template: cfn-lint, sam validate --lint, sam build"
bash scripts/lint-template.sh
bash scripts/sam-build.sh
echo "==> mypy"
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
[ "$mypy_status" -eq 0 ] || exit "$mypy_status"
echo "==> pytest (Postgres 15: the whole suite)"
AEF_TEST_PG=15 python -m pytest -q -p no:cacheprovider "$@"
# New Supabase projects run Postgres 17: the database-facing tests (marker `supabase`:
# migrations, RLS, broadcast, identity, the production-login cycle) run there too.
echo "==> pytest (Postgres 17: -m supabase)"
bash scripts/pg17.sh
AEF_TEST_PG=17 python -m pytest -q -p no:cacheprovider -m supabase "$@"
