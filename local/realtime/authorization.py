"""Private-channel authorization: the RLS probe of supabase/realtime `Tenants.Authorization`.

Read: in one transaction, as the server's own role (RLS does not apply to it), insert one probe
row per extension into `realtime.messages` with ids chosen here; then become the caller —
transaction-local `role`, `realtime.topic`, `request.jwt.claims`, `request.jwt.claim.sub`,
`request.jwt.claim.role`, `request.headers` — and select the probe rows by id. A probe row the
caller can see means the caller may read that extension. Everything is rolled back.

Write: in one transaction, become the caller and insert a row for the extension in a savepoint;
`insufficient_privilege` (an RLS `with check` refusal) means no, success means yes. Rolled back.

So the policies a project writes on `realtime.messages` are the only authority, exactly as on
Supabase, and this server never decides access itself.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import AsyncConnectionPool

Extension = Literal["broadcast", "presence"]

_SET_CONN_CONFIG = (
    "select set_config('role', %s, true),"
    " set_config('realtime.topic', %s, true),"
    " set_config('request.jwt.claims', %s, true),"
    " set_config('request.jwt.claim.sub', %s, true),"
    " set_config('request.jwt.claim.role', %s, true),"
    " set_config('request.headers', %s, true)"
)
_INSERT_PROBES = (
    "insert into realtime.messages (id, topic, extension)"
    " select unnest(%s::uuid[]), %s, unnest(%s::text[])"
)
_SELECT_PROBES = "select id from realtime.messages where id = any(%s::uuid[])"
_INSERT_WRITE_PROBE = "insert into realtime.messages (topic, extension) values (%s, %s)"
# Errors that mean "no": RLS refusal, a role that does not exist, a policy that fails.
_REFUSALS = (pgerrors.InsufficientPrivilege, pgerrors.InvalidParameterValue,
             pgerrors.DataException, pgerrors.ProgrammingError)

log = logging.getLogger(__name__)


class AuthorizationUnavailable(Exception):
    """The probe could not run (database down, missing partition); not a refusal."""


@dataclass(frozen=True, slots=True)
class AuthorizationContext:
    """Who asks for which topic (`topic` without the `realtime:` prefix)."""

    topic: str
    role: str
    claims: Mapping[str, Any]
    sub: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Policies:
    """What the caller may do on one topic; None means not evaluated yet."""

    broadcast_read: bool | None = None
    broadcast_write: bool | None = None
    presence_read: bool | None = None
    presence_write: bool | None = None

    def can_write(self, extension: Extension) -> bool | None:
        return self.broadcast_write if extension == "broadcast" else self.presence_write


def _conn_config(ctx: AuthorizationContext) -> tuple[str, ...]:
    claims = json.dumps(dict(ctx.claims), separators=(",", ":"), default=str)
    headers = json.dumps(dict(ctx.headers), separators=(",", ":"))
    return (ctx.role, ctx.topic, claims, ctx.sub or "", ctx.role, headers)


async def read_policies(
    pool: AsyncConnectionPool,
    ctx: AuthorizationContext,
    *,
    presence_enabled: bool,
    policies: Policies | None = None,
) -> Policies:
    """Evaluate read access for broadcast (and presence when the channel uses it).

    A policy that errors counts as a refusal, like Realtime's `rls_policy_error`; a probe that
    cannot run raises `AuthorizationUnavailable`.
    """
    policies = policies or Policies()
    extensions: list[Extension] = ["broadcast", "presence"] if presence_enabled else ["broadcast"]
    probes = {ext: uuid.uuid4() for ext in extensions}
    visible: set[uuid.UUID] = set()
    try:
        async with pool.connection() as conn:
            try:
                try:
                    await conn.execute(
                        _INSERT_PROBES,
                        (list(probes.values()), ctx.topic, list(probes.keys())),
                    )
                except pgerrors.CheckViolation as exc:  # no partition for today
                    raise AuthorizationUnavailable("realtime.messages has no partition") from exc
                except psycopg.DatabaseError as exc:
                    raise AuthorizationUnavailable(f"probe insert failed: {exc}") from exc
                try:
                    await conn.execute(_SET_CONN_CONFIG, _conn_config(ctx))
                    cur = await conn.execute(_SELECT_PROBES, (list(probes.values()),))
                    visible = {row[0] for row in await cur.fetchall()}
                except _REFUSALS as exc:
                    # No such role, or a policy that errors: Realtime's rls_policy_error.
                    log.info("rls probe refused", extra={"topic": ctx.topic, "error": str(exc)})
            finally:
                await conn.rollback()
    except psycopg.OperationalError as exc:
        raise AuthorizationUnavailable(str(exc)) from exc
    except TimeoutError as exc:  # pool exhausted or database unreachable
        raise AuthorizationUnavailable("no database connection available") from exc
    for ext, probe in probes.items():
        if ext == "broadcast":
            policies.broadcast_read = probe in visible
        else:
            policies.presence_read = probe in visible
    return policies


async def write_policy(
    pool: AsyncConnectionPool,
    ctx: AuthorizationContext,
    extension: Extension,
    policies: Policies,
) -> Policies:
    """Evaluate write access for one extension (checked when a client first sends)."""
    allowed = False
    try:
        async with pool.connection() as conn:
            try:
                await conn.execute(_SET_CONN_CONFIG, _conn_config(ctx))
                async with conn.transaction():  # a savepoint inside the outer transaction
                    await conn.execute(_INSERT_WRITE_PROBE, (ctx.topic, extension))
                allowed = True
            except pgerrors.CheckViolation as exc:  # no partition for today
                raise AuthorizationUnavailable("realtime.messages has no partition") from exc
            except _REFUSALS as exc:
                log.info("rls write probe refused", extra={"topic": ctx.topic, "error": str(exc)})
            finally:
                await conn.rollback()
    except psycopg.OperationalError as exc:
        raise AuthorizationUnavailable(str(exc)) from exc
    except TimeoutError as exc:
        raise AuthorizationUnavailable("no database connection available") from exc
    if extension == "broadcast":
        policies.broadcast_write = allowed
    else:
        policies.presence_write = allowed
    return policies
