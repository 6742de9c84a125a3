"""Runner test fixtures: the local site, S3 on a moto server, executions ready to claim.

Everything is real: PostgreSQL (the session database from tests/conftest.py), Chromium, HTTP
to a local site, S3 API calls to moto's server. Executions are written the way the API writes
them (document + queued execution + runner token hash + secrets, through the service role).
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aef.db import Database
from aef.settings import Settings, get_settings
from tests.runner.helpers import Execution, make_execution
from tests.runner.pages import Site, serve_site

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

BUCKET = "aef-runner-tests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    with serve_site() as running:
        yield running


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in this process, with the screenshot bucket created."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def runner_work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aef-runner-test-"))
    yield path


@pytest.fixture
def settings(runner_database_url: str, s3_endpoint: str, runner_work_dir: Path) -> Settings:
    """Fast, loopback-allowed settings for one test."""
    return get_settings().model_copy(update={
        "database_url": runner_database_url,  # aef_runner_login, as in production
        "allow_loopback": True,
        "headless": True,
        "chromium_path": "/usr/bin/chromium",
        "s3_endpoint_url": s3_endpoint,
        "screenshot_bucket": BUCKET,
        "auto_retry_delay_seconds": 0.2,
        "max_auto_retries": 2,
        "heartbeat_seconds": 1.0,
        "lease_seconds": 10,
        "work_dir": str(runner_work_dir),
    })


@pytest.fixture
def new_execution(db: Database) -> Any:
    """Factory: `new_execution(plan, secrets=..., variables=..., config=...)` -> Execution."""
    def factory(plan: list[dict[str, Any]], **kwargs: Any) -> Execution:
        return make_execution(db, plan, **kwargs)
    return factory


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
