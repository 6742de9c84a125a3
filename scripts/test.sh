#!/usr/bin/env bash
# The whole test suite: lint, generated-spec freshness, template checks, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
export PATH="$PWD/.venv/bin:$PATH"

echo "==> ruff"
ruff check .
echo "==> mypy"
mypy aef runner functions local
echo "==> OpenAPI spec is current (docs/openapi.json)"
python -m aef.openapi --check
echo "==> SAM template: cfn-lint, sam validate --lint, sam build"
bash scripts/lint-template.sh
bash scripts/sam-build.sh
echo "==> pytest"
python -m pytest -q -p no:cacheprovider "$@"
