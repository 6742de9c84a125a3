"""Postgres access: a psycopg 3 pool and transactions that carry an identity.

Every transaction applies its identity the way PostgREST does — a transaction-local `role`
and `request.jwt.claims` — so the same RLS policies hold for supabase-js and for us. All
settings are transaction-local and no server-side prepared statements are used, so this works
through Supabase's transaction pooler (Supavisor, port 6543).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from aef.errors import AefError, Conflict, ServiceUnavailable, Unauthorized

Connection = psycopg.Connection[dict[str, Any]]

_SET_IDENTITY = (
    "select set_config('role', %(role)s, true), "
    "set_config('request.jwt.claims', %(claims)s, true), "
    "set_config('aef.execution_id', %(execution_id)s, true), "
    "set_config('aef.runner_token', %(runner_token)s, true)"
)
# The API also refuses callers whose user row is gone (a token outlives its user). A statement
# of its own, after the role switch: the functions' login (aef_functions, NOINHERIT) may not use
# schema aef_private itself, and names are resolved before set_config('role') takes effect.
_CHECK_USER = "select aef_private.user_is_active(%(sub)s::uuid) as active"


def connect_kwargs() -> dict[str, Any]:
    """Connection options that keep us compatible with transaction poolers."""
    return {"prepare_threshold": None, "row_factory": dict_row, "autocommit": False}


def translate_error(exc: psycopg.Error) -> AefError | None:
    """Map database refusals to client errors; None means it is our bug (500)."""
    state = exc.sqlstate or ""
    diag = exc.diag
    if state == "AEF01":
        detail = _json_detail(diag.message_detail)
        extra: dict[str, Any] = {"transition": detail} if detail else {}
        return Conflict(diag.message_primary or "illegal transition", code="illegal_transition",
                        **extra)
    if state == "AEF02":
        detail = _json_detail(diag.message_detail) or {}
        return Conflict("The checkpoint was already answered", code="checkpoint_already_answered",
                        firstDecision=detail)
    if state == "AEF03":
        return Conflict(diag.message_primary or "append-only", code="append_only")
    if isinstance(exc, pgerrors.SerializationFailure | pgerrors.DeadlockDetected):
        return Conflict("A concurrent change won; retry the request", code="concurrent_update")
    if isinstance(exc, pgerrors.LockNotAvailable | pgerrors.QueryCanceled):
        return ServiceUnavailable("The database is busy; retry shortly", code="database_busy")
    if isinstance(exc, psycopg.OperationalError):
        return ServiceUnavailable("The database is unavailable", code="database_unavailable")
    return None


def _json_detail(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Database:
    """One pool per process (a Lambda warm start reuses it)."""

    def __init__(self, url: str, *, min_size: int = 0, max_size: int = 4,
                 connect_timeout: float = 5.0, max_idle: float = 600.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            connection_class=psycopg.Connection[dict[str, Any]],
            kwargs=connect_kwargs(),
            open=False,
            check=ConnectionPool.check_connection,
            reconnect_timeout=30,
            max_idle=max_idle,
        )
        self._opened = False
        self._lock = threading.Lock()

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False

    @contextmanager
    def _transaction(self, identity: Mapping[str, str], *, check_user: bool = False
                     ) -> Iterator[Connection]:
        self._ensure_open()
        try:
            with self._pool.connection(timeout=self.connect_timeout) as conn, conn.transaction():
                conn.execute(_SET_IDENTITY, dict(identity))
                if check_user:
                    row = conn.execute(_CHECK_USER, dict(identity)).fetchone()
                    if not row or not row["active"]:
                        raise Unauthorized(
                            "The token's user does not exist", code="unknown_user",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token", '
                                     'error_description="The token\'s user does not exist"'})
                yield conn
        except psycopg.Error as exc:
            translated = translate_error(exc)
            if translated is None:
                raise
            raise translated from exc
        except TimeoutError as exc:  # pool exhausted or server unreachable
            raise ServiceUnavailable("The database is unavailable",
                                     code="database_unavailable") from exc

    def as_user(self, claims: Mapping[str, Any]) -> Any:
        """The API acting for the caller: role aef_api + the caller's claims (own rows only)."""
        return self._transaction(_identity("aef_api", claims), check_user=True)

    def as_authenticated(self, claims: Mapping[str, Any]) -> Any:
        """Exactly what supabase-js gets through PostgREST: role authenticated + claims."""
        return self._transaction(_identity("authenticated", claims))

    def as_anon(self) -> Any:
        return self._transaction(_identity("anon", {"role": "anon"}))

    def as_service(self) -> Any:
        """Scheduled and bookkeeping work (sweeper, launcher): AEF tables only."""
        return self._transaction(_identity("aef_service", {"role": "aef_service"}))

    def as_runner(self, execution_id: str, runner_token: str) -> Any:
        """The runner: only the execution whose id and token it presents."""
        return self._transaction(
            _identity("aef_runner", {"role": "aef_runner"}, execution_id, runner_token))


def _identity(role: str, claims: Mapping[str, Any], execution_id: str = "",
              runner_token: str = "") -> dict[str, str]:
    return {
        "role": role,
        "sub": str(claims.get("sub") or "00000000-0000-0000-0000-000000000000"),
        "claims": json.dumps(dict(claims), separators=(",", ":"), default=str),
        "execution_id": execution_id,
        "runner_token": runner_token,
    }


_default: Database | None = None
_default_lock = threading.Lock()


def get_database() -> Database:
    """The process-wide pool, created on first use (not at import: cold starts stay fast)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from aef.settings import get_settings

                s = get_settings()
                _default = Database(s.database_url, min_size=s.db_pool_min,
                                    max_size=s.db_pool_max, max_idle=s.db_max_idle_seconds)
    return _default


def set_database(db: Database | None) -> None:
    """Point the process at another database (tests, the local stack)."""
    global _default
    with _default_lock:
        _default = db
