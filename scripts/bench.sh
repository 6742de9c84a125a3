#!/usr/bin/env bash
# Every benchmark; each prints medians and ratios against a baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
for bench in bench/bench_transform.py bench/bench_cold_start.py bench/bench_api.py \
             bench/bench_runner.py bench/bench_realtime.py bench/bench_checkpoint.py \
             bench/bench_deploy.py; do
  echo "==> $bench"
  python "$bench"
done
if [ -f bench/load/run.py ]; then
  echo "==> bench/load/run.py"
  python bench/load/run.py "$@"
fi
