"""The local stack's S3 (moto's server with a journal): what it stored is there after a
restart, at the same address, through the same `aef.screenshots` calls the runner makes.

Each server runs in a process of its own, as in `aef dev`: moto keeps its objects in module
globals, so a second server in the same process would see the first one's objects whether or
not anything was persisted.
"""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Queue
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from aef.screenshots import ScreenshotStore
from aef.settings import Settings
from local.s3 import JOURNAL, LOCAL_AWS_CREDENTIALS, PORT_FILE, S3Server, client

BUCKET = "aef-screenshots"
EXECUTION = "6c0c8f8e-2a8e-4f5c-9a52-3f1c1d9e7b10"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOCAL_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def serve(folder: Path, started: Queue[tuple[str, int]], stop: Event) -> None:
    """In a fresh interpreter: the stack's S3 server on `folder` until `stop` is set."""
    server = S3Server(folder)
    server.start()
    server.create_bucket(BUCKET, "us-east-1")
    started.put((server.endpoint_url, server.restored))
    stop.wait()
    server.stop()


@dataclass
class Running:
    endpoint_url: str
    restored: int


@contextmanager
def started(folder: Path) -> Iterator[Running]:
    spawn = multiprocessing.get_context("spawn")
    queue: Any = spawn.Queue()
    stop = spawn.Event()
    process = spawn.Process(target=serve, args=(folder, queue, stop))
    process.start()
    try:
        yield Running(*queue.get(timeout=60))
    finally:
        stop.set()
        process.join(timeout=30)
        assert process.exitcode == 0


def store_for(server: Running) -> ScreenshotStore:
    return ScreenshotStore(Settings(s3_endpoint_url=server.endpoint_url, screenshot_bucket=BUCKET,
                                    jwt_secret=SecretStr("x" * 32)))


def test_screenshots_and_their_urls_survive_restarts(tmp_path: Path) -> None:
    with started(tmp_path) as first:
        assert first.restored == 0
        key, url = store_for(first).put(EXECUTION, "login page", JPEG)
        assert httpx.get(url, timeout=10).content == JPEG
        s3 = client(first.endpoint_url)
        with pytest.raises(s3.exceptions.NoSuchBucket):  # refused: not kept
            s3.put_object(Bucket="no-such-bucket", Key="x", Body=b"x")
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=2)  # nothing serves it while the stack is down
    journal = tmp_path / JOURNAL
    assert len(journal.read_text().splitlines()) == 2  # create bucket, put object
    with journal.open("a") as out:
        out.write('{"method": "PUT", "path": "/aef-screenshots/torn')  # a crash mid-write

    with started(tmp_path) as second:
        assert second.endpoint_url == first.endpoint_url
        assert second.restored == 2  # the bucket and the object; the torn line is skipped
        answer = httpx.get(url, timeout=10)  # the URL handed out before the restart
        assert answer.status_code == 200 and answer.content == JPEG
        assert answer.headers["content-type"] == "image/jpeg"
        assert answer.headers["cache-control"] == "private, max-age=300"
        assert httpx.get(store_for(second).sign(key), timeout=10).content == JPEG
        listed = client(second.endpoint_url).list_objects_v2(Bucket=BUCKET)["Contents"]
        assert [item["Key"] for item in listed] == [key]

    # its port taken by someone else, the server moves; the objects come along
    port = int((tmp_path / PORT_FILE).read_text())
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        with started(tmp_path) as moved:
            assert moved.endpoint_url != first.endpoint_url
            assert httpx.get(store_for(moved).sign(key), timeout=10).content == JPEG
