"""Every benchmark runs from `make bench` on a fresh clone: imported, then smoke-run small.

`scripts/bench.sh` runs `bench/bench_*.py` and then `bench/load/run.py`; the same list is found
here, so a new benchmark is covered the day it is added (and must be given a smoke size).
Each runs as `make bench` runs it, a script in a fresh interpreter, but from a folder outside
the repository, so nothing may depend on the working directory or on `PYTHONPATH`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = [*sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("bench/bench_*.py")),
              "bench/load/run.py"]

# The smallest run of each that still goes through all of its code and prints its ratios.
SMOKE = {
    "bench/bench_api.py": ["--n", "2", "--log-rows", "300"],
    "bench/bench_checkpoint.py": ["--steps", "1", "--runs", "1"],
    "bench/bench_cold_start.py": ["--runs", "1"],
    "bench/bench_deploy.py": ["--signings", "5", "--runs", "1"],
    "bench/bench_grounding.py": ["--pages", "1"],
    "bench/bench_preview.py": ["--n", "2"],
    "bench/bench_realtime.py": ["--events", "3"],
    "bench/bench_runner.py": ["--steps", "10", "--runs", "1"],
    "bench/bench_start.py": ["--n", "1", "--slots", "1"],
    "bench/bench_transform.py": ["--samples", "2", "--batch", "2"],
    "bench/load/run.py": ["--executions", "2", "--clients", "4", "--seconds", "2",
                          "--baseline-seconds", "1"],
}
NEEDS_CHROMIUM = {"bench/bench_runner.py", "bench/bench_preview.py", "bench/bench_start.py",
                  "bench/bench_grounding.py"}


def run_benchmark(path: str, *args: str, cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("AEF_")}
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    result = subprocess.run([sys.executable, str(ROOT / path), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{path} exited {result.returncode}:\n{output[-4000:]}"
    return output


def test_bench_sh_runs_every_benchmark_found_here() -> None:
    script = (ROOT / "scripts" / "bench.sh").read_text()
    assert "for bench in bench/bench_*.py" in script and "python bench/load/run.py" in script
    assert set(SMOKE) == set(BENCHMARKS), "give every benchmark a smoke size in SMOKE"


@pytest.mark.parametrize("path", BENCHMARKS)
def test_benchmark_imports_and_prints_its_usage(path: str, tmp_path: Path) -> None:
    """`--help` runs every top-level import of the script, from outside the repository."""
    output = run_benchmark(path, "--help", cwd=tmp_path, timeout=120)
    assert output.startswith("usage:"), output


@pytest.mark.slow
@pytest.mark.parametrize("path", BENCHMARKS)
def test_benchmark_smoke_run_prints_its_ratios(path: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    if path in NEEDS_CHROMIUM:
        request.applymarker(pytest.mark.browser)
    output = run_benchmark(path, *SMOKE[path], cwd=tmp_path, timeout=280)
    assert "ratio" in output.lower(), output[-4000:]
