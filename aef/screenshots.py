"""Screenshots through the S3 API (AWS S3, Supabase Storage's S3 endpoint, or a moto server).

A screenshot is a JPEG stored under `{prefix}{execution_id}/{seq:06d}-{name}.jpg` and published
as a short-lived presigned GET URL: live messages carry URLs, never image bytes. Uploads are
best effort by design: a failed upload is logged by the caller and never fails a step.
boto3 is imported on first use so functions that never touch S3 keep their cold start small.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from typing import Any

from aef.settings import Settings

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def screenshot_key(prefix: str, execution_id: str, seq: int, name: str) -> str:
    """The object key; `name` is reduced to a safe file-name fragment."""
    safe = _NAME_UNSAFE.sub("_", name).strip("._")[:80] or "screen"
    return f"{prefix}{execution_id}/{seq:06d}-{safe}.jpg"


UPLOAD_TIMEOUT_SECONDS = 8.0
FAILURE_PAUSE_SECONDS = 30.0


class UploadPaused(Exception):
    """A recent upload failed; this one was not attempted."""


class ScreenshotStore:
    """Upload JPEGs and hand out presigned GET URLs valid `signed_url_seconds`."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.bucket = settings.screenshot_bucket
        self.prefix = settings.screenshot_prefix
        self.expires = settings.signed_url_seconds
        self._endpoint = settings.s3_endpoint_url
        self._region = settings.aws_region
        self._client = client
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count[int]] = {}
        self._paused_until = 0.0  # after a failure, skip uploads for a while

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created once: path-style addressing and SigV4 signatures,
        which AWS, Supabase Storage's S3 endpoint and moto all accept."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client(
                        "s3",
                        endpoint_url=self._endpoint,
                        region_name=self._region,
                        config=Config(
                            s3={"addressing_style": "path"},
                            signature_version="s3v4",
                            retries={"max_attempts": 2, "mode": "standard"},
                            connect_timeout=2,
                            read_timeout=5,
                        ),
                    )
        return self._client

    def start_at(self, execution_id: str, seq: int) -> None:
        """Number this execution's screenshots from `seq` (a resume must not overwrite)."""
        with self._lock:
            self._counters[execution_id] = itertools.count(seq)

    def _next_seq(self, execution_id: str) -> int:
        with self._lock:
            counter = self._counters.setdefault(execution_id, itertools.count(1))
            return next(counter)

    def put(self, execution_id: str, name: str, data: bytes) -> tuple[str, str]:
        """Upload one JPEG; returns (key, presigned URL). Raises on failure (caller decides)."""
        key = screenshot_key(self.prefix, execution_id, self._next_seq(execution_id), name)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="image/jpeg",
            CacheControl="private, max-age=300",
        )
        return key, self.sign(key)

    def sign(self, key: str) -> str:
        """A presigned GET URL for `key` (no network call)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expires
        )
        return url

    async def put_async(self, execution_id: str, name: str, data: bytes) -> tuple[str, str]:
        """`put` in a worker thread, bounded in time, so a hung S3 cannot hold a step up.

        After a failure, uploads are skipped for `FAILURE_PAUSE_SECONDS` (each skipped one
        raises at once), so an outage costs one timeout, not one per step.
        """
        now = time.monotonic()
        if now < self._paused_until:
            raise UploadPaused(f"uploads paused for {self._paused_until - now:.0f} s after a "
                               "failure")
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.put, execution_id, name, data), UPLOAD_TIMEOUT_SECONDS)
        except Exception:
            self._paused_until = time.monotonic() + FAILURE_PAUSE_SECONDS
            raise


_store: ScreenshotStore | None = None
_store_lock = threading.Lock()


def get_screenshot_store() -> ScreenshotStore:
    """The process-wide store: one S3 client per warm Lambda sandbox, not one per request
    (a new client costs milliseconds of setup; signing with a held one is sub-millisecond)."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                from aef.settings import get_settings

                _store = ScreenshotStore(get_settings())
    return _store


def set_screenshot_store(store: ScreenshotStore | None) -> None:
    """Point the process at another store (tests, the local stack); None: rebuild lazily."""
    global _store
    with _store_lock:
        _store = store
