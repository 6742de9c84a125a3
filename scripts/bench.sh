#!/usr/bin/env bash
# Every benchmark (bench/bench_*.py, then the load run); each prints medians and ratios against
# a baseline measured in the same run. Outputs are saved under bench/results/, and
# bench/summary.py prints one table of every figure against its goal (bench/results/latest.json).
# tests/repo/test_benchmarks.py smoke-runs the same list.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
results=bench/results
mkdir -p "$results"
rm -f "$results"/*.log
for bench in bench/bench_*.py; do
  echo "==> $bench"
  python "$bench" | tee "$results/$(basename "$bench" .py).log"
done
echo "==> bench/load/run.py"
python bench/load/run.py "$@" | tee "$results/load.log"
echo "==> summary"
python bench/summary.py --results "$results"
