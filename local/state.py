"""The local stack's state folder (`.aef/`) and the description a running `aef dev` leaves
there for other commands (`stack.json`)."""


from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

_DEV_USER_NAMESPACE = uuid.UUID("6f1f3c2e-4b7a-4d0e-9a57-2f4c8e1d9b30")


class StackError(RuntimeError):
    """The stack cannot start; the message tells the person what to do."""



@dataclass(frozen=True)
class StateDir:
    """`.aef/` by default: git-ignored, everything the local stack creates."""

    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def screenshots(self) -> Path:
        return self.root / "screenshots"

    @property
    def runner_work(self) -> Path:
        return self.root / "runner"

    @property
    def s3(self) -> Path:
        """The local S3 server's journal (the stored screenshots) and port."""
        return self.root / "s3"

    @property
    def stack_file(self) -> Path:
        return self.root / "stack.json"

    def ensure(self) -> None:
        for path in (self.root, self.keys, self.logs, self.screenshots, self.runner_work,
                     self.s3):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StackError(f"Cannot create the state folder {path}: {exc.strerror}; "
                                 "pass --state-dir with a folder you can write") from None


@dataclass(frozen=True)
class DevUser:
    email: str
    name: str

    @property
    def default_id(self) -> str:
        """A stable id, so a token minted before a restart still names the same user."""
        return str(uuid.uuid5(_DEV_USER_NAMESPACE, self.email.lower()))


DEV_USERS = (DevUser("demo@aef.local", "Demo User"), DevUser("reviewer@aef.local", "Reviewer"))


@dataclass
class StackInfo:
    """What a running `aef dev` tells other commands (`.aef/stack.json`)."""

    pid: int
    supabase_url: str
    database_url: str
    database_name: str
    postgres: str  # DATABASE_URL | local | embedded
    s3_endpoint_url: str
    screenshot_bucket: str
    screenshot_prefix: str
    anon_key: str
    users: dict[str, str]  # email -> id
    started_at: str
    log_dir: str

    @property
    def api_url(self) -> str:
        return self.supabase_url

    @property
    def console_url(self) -> str:
        return f"{self.supabase_url}/console/"

    @property
    def realtime_url(self) -> str:
        ws = self.supabase_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{ws}/realtime/v1/websocket"

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackInfo | None:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

