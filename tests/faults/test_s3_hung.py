"""An S3 endpoint that accepts connections and never answers costs one bounded wait."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from aef import screenshots
from aef.settings import Settings


async def test_hung_s3_is_bounded_then_paused(monkeypatch: Any) -> None:
    monkeypatch.setattr(screenshots, "UPLOAD_TIMEOUT_SECONDS", 2.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (the kernel completes handshakes) and never answers
    port = silent.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = screenshots.ScreenshotStore(Settings(s3_endpoint_url=f"http://127.0.0.1:{port}"))
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await store.put_async("exec-1", "step", b"\xff\xd8jpeg")
        assert time.monotonic() - started < 6  # bounded by the timeout, not by S3
        started = time.monotonic()
        with pytest.raises(screenshots.UploadPaused):
            await store.put_async("exec-1", "step-2", b"\xff\xd8jpeg")
        assert time.monotonic() - started < 1.0  # paused: no second wait for the timeout
    finally:
        silent.close()
