"""Fault-suite fixtures: real runners launched through the API, and the knobs to break things.

Runs go the production way: a person's POST /execute through the functions' Mangum handlers,
the API's launcher starting `python -m runner` (a subprocess, as `aef dev` does), the runner
claiming its execution through its own database role and driving Chromium against a local
site. The faults are then real too: a PostgreSQL restart (a private server), ECS refusing
run_task (moto), S3 going away (a moto server we stop), SIGKILL, a site slower than the step
timeout.

Importing tests.api.conftest sets the API's environment (HS256 secret, ECS launcher, AWS
test credentials) before any Settings are read; its `moto_ecs` fixture is re-exported.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aef.db import Database, get_database, set_database
from aef.launcher import Launch, Launcher, LaunchFailed, get_launcher, set_launcher
from aef.settings import get_settings
from tests.api.conftest import Api, make_token, moto_ecs
from tests.integration.factories import User, create_user
from tests.runner.pages import Site, serve_site

__all__ = ["Person", "SpawnLauncher", "moto_ecs", "use_database"]

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "aef-fault-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Person:
    """A signed-up user and the access token the functions accept for them."""

    user: User
    token: str

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def claims(self) -> dict[str, Any]:
        return self.user.claims


def new_person(db: Database) -> Person:
    user = create_user(db)
    return Person(user, make_token(user.id, email=user.email))


class SpawnLauncher:
    """The local launcher (`python -m runner`, token in the environment), with test settings.

    `aef.launcher.LocalLauncher` passes its own process environment on; here every runner gets
    the fault test's settings (database, S3 endpoint, lease, retry delays) instead.
    """

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.launched: list[str] = []

    def launch(self, execution_id: str, runner_token: str) -> Launch:
        env = {**self.env, "AEF_EXECUTION_ID": execution_id, "AEF_RUNNER_TOKEN": runner_token}
        log_path = self.log_dir / f"runner-{execution_id[:8]}-{len(self.launched)}.log"
        with log_path.open("wb") as out:
            try:
                proc = subprocess.Popen([sys.executable, "-m", "runner"], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise LaunchFailed(f"could not start the runner: {exc.strerror}") from exc
        arn = f"local:{proc.pid}"
        self.procs[arn] = proc
        self.launched.append(execution_id)
        return Launch(task_arn=arn)

    def stop(self, task_arn: str, reason: str) -> bool:
        proc = self.procs.get(task_arn)
        if proc is None or proc.poll() is not None:
            return False
        os.killpg(proc.pid, signal.SIGKILL)
        return True

    def latest(self) -> subprocess.Popen[bytes]:
        return list(self.procs.values())[-1]

    def output(self) -> str:
        """Every runner's stderr (JSON lines), for assertions and their messages."""
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.log_dir.glob("runner-*.log")))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)


def runner_env(database_url: str, *, s3_endpoint: str, work_dir: Path,
               **overrides: str) -> dict[str, str]:
    """What a runner task gets: DATABASE_URL plus AEF_* settings (fast, loopback allowed)."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url,
        "AEF_ALLOW_LOOPBACK": "true",
        "AEF_CHROMIUM_PATH": "/usr/bin/chromium",
        "AEF_HEADLESS": "true",
        "AEF_S3_ENDPOINT_URL": s3_endpoint,
        "AEF_SCREENSHOT_BUCKET": BUCKET,
        "AEF_HEARTBEAT_SECONDS": "1",
        "AEF_LEASE_SECONDS": "10",
        "AEF_AUTO_RETRY_DELAY_SECONDS": "0.3",
        "AEF_MAX_AUTO_RETRIES": "2",
        "AEF_WORK_DIR": str(work_dir),
    })
    env.update(overrides)
    return env


@contextmanager
def use_launcher(launcher: Launcher) -> Iterator[Launcher]:
    """The API launches through `launcher` inside the block (the previous one comes back)."""
    previous = get_launcher()
    set_launcher(launcher)
    try:
        yield launcher
    finally:
        set_launcher(previous)


@contextmanager
def use_database(database: Database) -> Iterator[Database]:
    """The functions use `database` inside the block (the session database comes back)."""
    previous = get_database()
    set_database(database)
    try:
        yield database
    finally:
        set_database(previous)


@pytest.fixture(scope="session", autouse=True)
def _api_settings() -> None:
    """The API verifies the HS256 tokens minted here (the secret tests.api.conftest set)."""
    if get_settings().jwt_secret is None:
        get_settings.cache_clear()
    assert get_settings().jwt_secret is not None


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    with serve_site() as running:
        yield running


@contextmanager
def moto_s3() -> Iterator[tuple[str, Any]]:
    """A moto S3 server of our own (so a test may take it down) with the screenshot bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint, server
    finally:
        shut_down(server)


def shut_down(server: Any) -> None:
    """Stop a ThreadedMotoServer and close its socket: connections are refused afterwards.

    (`stop()` alone leaves the listening socket open, so clients would hang, not fail.)
    """
    inner = getattr(server, "_server", None)
    if inner is None:
        return
    if server._server_ready_event.is_set():
        server.stop()
    inner.server_close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as (endpoint, _server):
        yield endpoint


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aef-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def api(db: Database) -> Api:
    """The functions through their Mangum handlers (moto ECS is not needed: see `spawn`)."""
    return Api()


@pytest.fixture
def person(db: Database) -> Person:
    return new_person(db)


@pytest.fixture
def spawn(runner_database_url: str, s3_endpoint: str, work_dir: Path, tmp_path: Path
          ) -> Iterator[Any]:
    """Factory: `spawn(**env_overrides)` installs a SpawnLauncher as the API's launcher.

    Runners still alive at the end are killed with their process group (Chromium included).
    """
    made: list[SpawnLauncher] = []
    previous = get_launcher()

    def make(**overrides: str) -> SpawnLauncher:
        launcher = SpawnLauncher(
            runner_env(overrides.pop("DATABASE_URL", runner_database_url),
                       s3_endpoint=overrides.pop("AEF_S3_ENDPOINT_URL", s3_endpoint),
                       work_dir=work_dir, **overrides),
            tmp_path)
        made.append(launcher)
        set_launcher(launcher)
        return launcher

    yield make
    set_launcher(previous)
    for launcher in made:
        launcher.close()
