"""End-to-end fixtures: the real `aef dev` stack as a subprocess, driven like a user drives it.

The stack gets its own state folder (keys, logs, screenshots) and its own database on the test
server (DATABASE_URL, default 127.0.0.1:5432), both removed at the end, so a developer's own
`.aef/` and `aef_dev` are never touched. It listens on a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from local.state import StackInfo, StateDir

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START_TIMEOUT_SECONDS = 120


def clean_env() -> dict[str, str]:
    """The environment a person's shell would have: no AEF_* left over from other tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEF_")}
    env["DATABASE_URL"] = ADMIN_URL
    env["PYTHONUNBUFFERED"] = "1"
    return env


def aef(state: StateDir, *args: str, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `aef` CLI as a person would (python -m local.cli == the `aef` script), with
    stdin that is not a terminal; `env` adds to (or overrides) a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "local.cli", "--state-dir", str(state.root), *args],
        capture_output=True, text=True, timeout=timeout, env={**clean_env(), **(env or {})},
        cwd=ROOT, check=False, stdin=subprocess.DEVNULL)


@dataclass
class RunningStack:
    info: StackInfo
    state: StateDir
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        return self.info.supabase_url

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def new_state_dir() -> StateDir:
    # world-traversable: an embedded PostgreSQL would run as the `postgres` user
    root = Path(tempfile.mkdtemp(prefix="aef-e2e-"))
    root.chmod(0o755)
    return StateDir(root)


def new_database_name() -> str:
    return f"aef_e2e_{uuid.uuid4().hex[:10]}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(
            sql.Identifier(name)))


def start_dev(state: StateDir, database: str, port: int = 0,
              env: dict[str, str] | None = None) -> RunningStack:
    """`aef dev` in the background, returned once /health answers 200; `env` adds to a
    clean environment."""
    state.ensure()
    log_file = state.logs / "dev.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.cli", "--state-dir", str(state.root), "dev",
             "--port", str(port), "--database-url", ADMIN_URL, "--database", database],
            stdout=log, stderr=subprocess.STDOUT, env={**clean_env(), **(env or {})},
            cwd=ROOT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"aef dev exited with {process.returncode}:\n"
                            + log_file.read_text(errors="replace")[-4000:])
            if time.monotonic() > deadline:
                pytest.fail("aef dev was not ready in time:\n"
                            + log_file.read_text(errors="replace")[-4000:])
            info = StackInfo.load(state.stack_file)
            if info is not None and info.pid == process.pid:
                try:
                    if httpx.get(f"{info.supabase_url}/health", timeout=2).status_code == 200:
                        return RunningStack(info, state, process, log_file)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
    except BaseException:
        stop_dev(process)
        raise


def stop_dev(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Stop a stack as a person does (Ctrl-C is SIGINT, `kill` SIGTERM); its exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


@contextmanager
def dev_stack(env: dict[str, str] | None = None) -> Iterator[RunningStack]:
    """`aef dev` on a state folder and database of its own, removed afterwards."""
    state = new_state_dir()
    database = new_database_name()
    try:
        running = start_dev(state, database, env=env)
        yield running
        stop_dev(running.process)
    finally:
        drop_database(database)
        shutil.rmtree(state.root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    with dev_stack() as running:
        yield running


@pytest.fixture(scope="session")
def demo_token(stack: RunningStack) -> str:
    """An access token from `aef token`, exactly what a person would paste."""
    result = aef(stack.state, "token", "--user", "demo@aef.local")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class DemoRun:
    returncode: int
    output: str
    execution_id: str


def run_demo(stack: RunningStack, timeout_seconds: float) -> DemoRun:
    """`aef demo --yes --plain` against `stack`, to its end or its timeout."""
    result = aef(stack.state, "demo", "--yes", "--plain", "--timeout",
                 str(timeout_seconds - 60), timeout=timeout_seconds)
    output = result.stdout + result.stderr
    found = re.search(r"Execution ([0-9a-f-]{36}) \w+; live on channel", output)
    assert found, f"no execution started:\n{output[-4000:]}\n{stack.log_tail()}"
    return DemoRun(result.returncode, output, found[1])


def task_arn_of(stack: RunningStack, execution_id: str) -> str:
    """Which runner the stack's launcher gave the execution (`pool:…` or `local:<pid>`)."""
    with psycopg.connect(stack.info.database_url) as conn:
        row = conn.execute("select task_arn from aef_executions where id = %s",
                           (execution_id,)).fetchone()
    assert row is not None, execution_id
    return str(row[0])
