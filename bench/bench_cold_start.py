"""Cold start of a function handler, as a ratio to a fresh `python -c "import boto3"`.

A cold start is a new process that imports the function module and serves its first request
through the Lambda handler: API Gateway v2 event -> Mangum -> middleware -> auth -> 401. The
token is well formed but signed with the wrong secret, so the full verification path runs and
no database is touched. Both sides run in fresh interpreters with warm .pyc caches (the layer
ships pycs too), N times each, interleaved; the medians are compared.

With Lambda SnapStart (template.yaml) a new sandbox restores a snapshot taken after the import
and a warm-up request (aef/snapshot.py) instead of importing: the bench also reports the first
request of such a process. The restore itself happens inside Lambda and is not measured here.

    .venv/bin/python bench/bench_cold_start.py [--runs 7] [--module functions.transform.app]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402

from tests.apigw import apigw_event  # noqa: E402

SERVER_SECRET = "bench-server-secret-0123456789abcdef0123456789"
WRONG_SECRET = "bench-wrong-secret-0123456789abcdef0123456789ab"

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
handler = getattr(module, sys.argv[2])
t1 = time.perf_counter()
if len(sys.argv) > 4:  # as SnapStart restores it: imported and warmed before the snapshot
    from aef import snapshot
    snapshot.warm(module.app, handler)
    t1 = time.perf_counter()
result = handler(json.loads(sys.argv[3]), None)
t2 = time.perf_counter()
print(json.dumps({"status": result["statusCode"], "importMs": (t1 - t0) * 1000,
                  "firstRequestMs": (t2 - t1) * 1000}))
"""


def _event(path: str) -> dict[str, Any]:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "0b6a3c1e-8a4f-4a8e-9a51-3f0c2d1b7e11",
            "role": "authenticated",
            "aud": "authenticated",
            "iat": now,
            "exp": now + 3600,
        },
        WRONG_SECRET,
        algorithm="HS256",
    )
    return apigw_event(
        "POST",
        path,
        headers={"authorization": f"Bearer {token}"},
        body={"sopId": "0b6a3c1e-8a4f-4a8e-9a51-3f0c2d1b7e11"},
    )


def _env() -> dict[str, str]:
    """The server knows SERVER_SECRET; no issuer check; pycs may be written (warm caches)."""
    env = dict(os.environ)
    env["AEF_JWT_SECRET"] = SERVER_SECRET
    env.pop("AEF_JWT_ISSUER", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--module", default="functions.transform.app")
    parser.add_argument("--handler", default="handler")
    parser.add_argument("--path", default="/api/aef/transform")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)

    env = _env()
    event = json.dumps(_event(args.path))
    target = [args.python, "-c", CHILD, args.module, args.handler, event]
    baseline = [args.python, "-c", "import boto3"]

    _run(target, env)  # warm the .pyc caches of both sides; not counted
    _run(baseline, env)
    target_ms: list[float] = []
    baseline_ms: list[float] = []
    splits: list[dict[str, float]] = []
    restored_ms: list[float] = []
    for _ in range(args.runs):
        elapsed, out = _run(target, env)
        child = _child(out)
        target_ms.append(elapsed)
        splits.append(child)
        baseline_ms.append(_run(baseline, env)[0])
        restored_ms.append(_child(_run([*target, "snapshot"], env)[1])["firstRequestMs"])

    result = {
        "bench": "cold_start",
        "module": args.module,
        "runs": args.runs,
        "targetMedianMs": round(statistics.median(target_ms), 1),
        "baselineMedianMs": round(statistics.median(baseline_ms), 1),
        "importMedianMs": round(statistics.median(s["importMs"] for s in splits), 1),
        "firstRequestMedianMs": round(statistics.median(s["firstRequestMs"] for s in splits), 1),
        "firstRequestAfterSnapshotMedianMs": round(statistics.median(restored_ms), 1),
    }
    result["ratio"] = round(result["targetMedianMs"] / result["baselineMedianMs"], 2)
    print(
        f"cold start {args.module}: {result['targetMedianMs']} ms "
        f"(import {result['importMedianMs']} ms + first 401 {result['firstRequestMedianMs']} ms)"
        f" vs `import boto3` {result['baselineMedianMs']} ms -> ratio {result['ratio']}"
    )
    print(f"  with SnapStart (import and warm-up in the snapshot, the restore itself not"
          f" measurable here): first 401 {result['firstRequestAfterSnapshotMedianMs']} ms")
    print(json.dumps(result))
    return 0


def _child(out: str) -> dict[str, float]:
    child: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    if child["status"] != 401:
        raise SystemExit(f"expected the first request to be a 401, got {child['status']}")
    return child


if __name__ == "__main__":
    sys.exit(main())
