"""Secrets Manager on a moto server, for tests whose code under test runs in a process of its
own (a fresh sandbox or task), configured only by its environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3


@contextmanager
def secretsmanager_server() -> Iterator[tuple[str, Any]]:
    """(endpoint URL, a client of it) while a moto server runs."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, boto3.client("secretsmanager", region_name="eu-west-1",
                                     endpoint_url=endpoint, aws_access_key_id="testing",
                                     aws_secret_access_key="testing")
    finally:
        server.stop()


def process_env(endpoint: str, **settings: str) -> dict[str, str]:
    """This environment without AEF settings or DATABASE_URL, AWS calls going to `endpoint`,
    plus `settings` (e.g. AEF_DATABASE_URL_SECRET_ARN=...)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AEF_") and k != "DATABASE_URL"}
    env.update({"AEF_AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", **settings})
    return env
