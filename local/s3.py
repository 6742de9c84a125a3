"""S3 for the local stack: moto's server, made durable with a journal under `.aef/s3/`.

moto keeps objects in memory, so a restart of `aef dev` used to lose every screenshot while
`/live` kept handing out their URLs. Here each write the server accepts (a PUT, POST or DELETE
answered 2xx: create bucket, put object, delete ...) is appended to `journal.jsonl` before its
answer leaves, and replayed into the fresh server at the next start. The bucket and objects
come back exactly as moto's own S3 API made them; `aef.screenshots` talks to it through the same
boto3 calls it uses against AWS. The server also keeps its port (`port` beside the journal), so
a presigned URL handed out before a restart still points at it afterwards.

Replaying costs about as much as the writes did in moto (single PUTs: what the stack makes).
A multipart upload would not survive a restart: its parts name an upload id that the fresh
server does not know.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("aef.dev")

LOCAL_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aef-local",
    "AWS_SECRET_ACCESS_KEY": "aef-local-secret",  # moto accepts any credentials
}
JOURNAL = "journal.jsonl"
PORT_FILE = "port"
_WRITES = frozenset({"PUT", "POST", "DELETE"})
# recomputed or meaningless when the request is sent again
_NOT_REPLAYED = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect"})


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return {k: v for k, v in headers.items() if k not in _NOT_REPLAYED}


class Journal:
    """WSGI middleware: appends every successful write to the journal file."""

    def __init__(self, app: Callable[..., Iterable[bytes]], path: Path) -> None:
        self.app = app
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", ""))
        if method not in _WRITES:
            return self.app(environ, start_response)
        body = self._read_body(environ)
        status: list[int] = []

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, headers, exc_info)

        result = self.app(environ, capture)
        if status and 200 <= status[0] < 300:
            query = environ.get("QUERY_STRING")
            self.append({"method": method, "path": environ.get("RAW_URI") or
                         (path + (f"?{query}" if query else "")),
                         "headers": _headers(environ),
                         "body": base64.b64encode(body).decode("ascii")})
        return result

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        """The whole request body, handed on to moto as a fresh stream."""
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return bytes(body)

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock, self.path.open("a") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())

    def entries(self) -> Iterator[dict[str, Any]]:
        """The journal's entries; a line cut short by a crash is skipped."""
        if not self.path.exists():
            return
        with self.path.open() as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    yield json.loads(line)


class S3Server:
    """moto's S3-compatible server on loopback; durable when given a folder."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.endpoint_url = ""
        self.restored = 0  # writes replayed from the journal at start
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._journal: Journal | None = None

    def _listen(self) -> socket.socket:
        """The port used last time when it is free (its presigned URLs stay valid), else any."""
        preferred = 0
        if self.folder is not None:
            with contextlib.suppress(OSError, ValueError):
                preferred = int((self.folder / PORT_FILE).read_text())
        for port in dict.fromkeys([preferred, 0]):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen(128)
            return sock
        raise OSError("no free port for the S3 server")

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # moto's S3 app itself: its dispatcher, which finds the service of each request
        # among all of moto's, costs several times the S3 work on every request
        s3_app: Any = create_backend_app("s3")
        app = s3_app
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._journal = app = Journal(s3_app, self.folder / JOURNAL)
            self._replay(s3_app)
        sock = self._listen()
        try:
            self._server = make_server("127.0.0.1", sock.getsockname()[1], app, threaded=True,
                                       request_handler=MotoRequestHandler, fd=sock.fileno())
        finally:
            sock.close()  # the server holds its own duplicate
        port = int(self._server.server_address[1])
        self.endpoint_url = f"http://127.0.0.1:{port}"
        server = self._server
        self._thread = threading.Thread(  # a short poll: stopping waits for one at most
            target=lambda: server.serve_forever(poll_interval=0.1), daemon=True, name="aef-s3")
        self._thread.start()
        if self.folder is not None:
            (self.folder / PORT_FILE).write_text(str(port))
        return self.endpoint_url

    def _replay(self, s3_app: Any) -> None:
        """Apply the journal's writes again, in order, to the fresh (empty) S3 app: called
        in this process, before the server listens, so nothing is journaled twice."""
        from werkzeug.test import Client

        assert self._journal is not None
        client = Client(s3_app)
        for entry in self._journal.entries():
            response = client.open(entry["path"], base_url="http://127.0.0.1/",
                                   method=entry["method"], headers=entry["headers"],
                                   data=base64.b64decode(entry["body"]))
            if response.status_code >= 300:
                log.warning("S3 journal: %s %s answered %s on replay", entry["method"],
                            entry["path"], response.status_code)
            self.restored += 1

    def create_bucket(self, bucket: str, region: str) -> None:
        s3 = client(self.endpoint_url, region)
        if bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            return  # restored from the journal
        s3.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def client(endpoint_url: str, region: str = "us-east-1") -> Any:
    """A boto3 S3 client for the local server, with the stack's credentials."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                        aws_access_key_id=LOCAL_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=LOCAL_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def clear(folder: Path) -> None:
    """Forget every stored object (with `aef dev --reset-db`: no screenshot outlives its run)."""
    (folder / JOURNAL).unlink(missing_ok=True)
