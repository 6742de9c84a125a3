"""Issue 6: the official Realtime clients on real AEF executions, not on a test-only policy.

The database is the migrated one (`database_url`: shim + supabase/migrations), so joining
`execution:<id>` is decided by `aef_execution_topic_read` alone, and every message comes from the
`aef_events` broadcast trigger. Runs are driven as in production: the user's actions through
the functions' Mangum handlers, the runner's writes through the runner's database role
(ScriptedRunner). Delivered payloads are compared with the `aef_events.message` rows.
"""
# Fixtures are imported by name (so pytest registers them here) and then requested as
# parameters of the same name, which ruff reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import websockets
from realtime import RealtimeSubscribeStates

from tests.api.helpers import ScriptedRunner, transform
from tests.realtime.aef_fixtures import (  # noqa: F401
    AefRealtime,
    Api,
    ApiUser,
    aef_realtime,
    api,
    event_rows,
    moto_ecs,
    new_user,
    realtime_messages,
    realtime_py,
)
from tests.realtime.conftest import as_sent
from tests.realtime.test_realtime_py import Statuses, private
from tests.realtime.test_supabase_js import node, supabase_js  # noqa: F401
from tests.waiting import until

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET_VALUE = "hunter2-realtime-secret"
SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR
T = TypeVar("T")


@dataclass
class ScriptedExecution:
    """One transformed execution, played step by step like the lifecycle test."""

    api: Api
    db: Any
    user: ApiUser
    execution_id: str
    document_id: str
    runner: ScriptedRunner | None = None
    checkpoint_id: str | None = None
    steps: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [
            self.execute,
            lambda: self._runner().claim(),
            lambda: self._runner().run_step("navigate_to_gmail", 20),
            self.ask_checkpoint,
            self.approve,
            lambda: self._runner().resume_after_checkpoint(),
            lambda: self._runner().run_step("enter_email", 100),
            lambda: self._runner().complete(),
        ]

    @property
    def topic(self) -> str:
        return f"execution:{self.execution_id}"

    def _runner(self) -> ScriptedRunner:
        assert self.runner is not None, "execute first"
        return self.runner

    def execute(self) -> None:
        reply = self.api.call("POST", "/api/aef/execute", self.user.token,
                              {"aefDocumentId": self.document_id,
                               "executionId": self.execution_id,
                               "secrets": {"gmail_email": "a@b.c",
                                           "gmail_password": SECRET_VALUE,
                                           "airtable_api_key": "key-1",
                                           "airtable_base_id": "app1"}})
        assert reply.status == 202, reply.body
        assert reply.body["channel"] == self.topic
        # after the launch: the runner token the API stored is replaced by the script's own
        self.runner = ScriptedRunner(self.db, self.execution_id)

    def ask_checkpoint(self) -> None:
        self.checkpoint_id = self._runner().ask_checkpoint("enter_email")

    def approve(self) -> None:
        reply = self.api.call("POST", f"/api/aef/checkpoint/{self.checkpoint_id}",
                              self.user.token, {"response": "approve"})
        assert reply.status == 200, reply.body

    def live(self, after: int) -> dict[str, Any]:
        reply = self.api.call("GET", f"/api/aef/live/{self.execution_id}", self.user.token,
                              query={"after": str(after)})
        assert reply.status == 200, reply.body
        return dict(reply.body)

    async def play(self, steps: list[Callable[[], None]]) -> None:
        for step in steps:
            await blocking(step)


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call (API handler, database) off the test's loop.

    Mangum drives each request with `asyncio.get_event_loop().run_until_complete`, so the
    worker thread gets a loop of its own for the call.
    """
    def call() -> T:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return fn(*args)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    return await asyncio.to_thread(call)


async def transformed(api: Api, db: Any, user: ApiUser) -> ScriptedExecution:
    created = await blocking(transform, api, user)
    return ScriptedExecution(api, db, user, created["executionId"], created["aefDocumentId"])


async def join(client: Any, topic: str, received: list[dict[str, Any]], *,
               private_channel: bool = True) -> Statuses:
    statuses = Statuses()
    options = private()
    options["config"]["private"] = private_channel
    channel = client.channel(topic, options)
    channel.on_broadcast("*", lambda message: received.append(dict(message)))
    await channel.subscribe(statuses)
    return statuses


def completed(received: list[dict[str, Any]]) -> bool:
    return any(m["event"] == "execution_complete" for m in received)


def assert_delivered(received: list[dict[str, Any]], rows: list[dict[str, Any]],
                     after: int) -> None:
    """`received` is exactly the outbox after seq `after`: order, event names, payloads."""
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "gapless outbox"
    expected = [r for r in rows if r["seq"] > after]
    assert [m["payload"]["seq"] for m in received] == [r["seq"] for r in expected]
    assert [m["event"] for m in received] == [r["type"] for r in expected]
    assert [as_sent(m["payload"]) for m in received] == [r["message"] for r in expected]
    assert SECRET_VALUE not in json.dumps(received)


async def test_realtime_py_receives_every_event_of_a_run(
        api: Api, db: Any, new_user: Callable[[], ApiUser], aef_realtime: AefRealtime,
        realtime_py: Any) -> None:
    user = new_user()
    run = await transformed(api, db, user)
    client = await realtime_py(user.token)
    received: list[dict[str, Any]] = []
    await aef_realtime.caught_up()  # the transform's event is fanned out before the join
    statuses = await join(client, run.topic, received)
    assert await statuses.wait_for(SUBSCRIBED) is None
    # What happened before the join (the transform's event) comes from the polling endpoint.
    before = await blocking(run.live, 0)
    assert before["lastSeq"] == 1

    await run.play(run.steps)
    await until(lambda: completed(received))
    rows = await blocking(event_rows, db, run.execution_id)
    assert_delivered(received, rows, after=before["lastSeq"])
    assert before["events"] == [rows[0]["message"]]
    assert {"checkpoint_required", "execution_update", "execution_complete"} <= {
        m["event"] for m in received}
    assert all(uuid.UUID(m["meta"]["id"]) for m in received)
    stored = await blocking(realtime_messages, db, run.execution_id)
    assert [m["payload"] for m in stored] == [r["message"] for r in rows]
    assert all(m["private"] for m in stored)


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
async def test_supabase_js_receives_every_event_of_a_run(
        node: str, api: Api, db: Any, new_user: Callable[[], ApiUser],
        aef_realtime: AefRealtime, vsn: str) -> None:
    user = new_user()
    run = await transformed(api, db, user)
    received: list[dict[str, Any]] = []
    async with supabase_js(node, aef_realtime.running, ACCESS_TOKEN=user.token, TOPIC=run.topic,
                           VSN=vsn, TIMEOUT_MS="30000") as js:
        assert await js.until("status") == {"status": "SUBSCRIBED", "error": None}
        before = await blocking(run.live, 0)
        await run.play(run.steps)
        while not completed(received):
            received.append((await js.until("broadcast"))["broadcast"])
    rows = await blocking(event_rows, db, run.execution_id)
    assert_delivered(received, rows, after=before["lastSeq"])
    assert all(m["type"] == "broadcast" and uuid.UUID(m["meta"]["id"]) for m in received)


async def test_another_users_token_is_refused_the_execution_channel(
        node: str, api: Api, db: Any, new_user: Callable[[], ApiUser],
        aef_realtime: AefRealtime, realtime_py: Any) -> None:
    owner, intruder = new_user(), new_user()
    run = await transformed(api, db, owner)
    reason = ("Unauthorized: You do not have permissions to read from this Channel topic: "
              f"{run.topic}")

    refused = await join(await realtime_py(intruder.token), run.topic, [])
    error = await refused.wait_for(CHANNEL_ERROR)
    assert error is not None and json.loads(str(error)) == {"reason": reason}

    async with supabase_js(node, aef_realtime.running, ACCESS_TOKEN=intruder.token,
                           TOPIC=run.topic) as js:
        assert await js.until("status") == {"status": "CHANNEL_ERROR", "error": reason}
    assert aef_realtime.subscribers(run.topic) == 0

    # A public join of the same topic needs no policy, but never sees the private broadcasts.
    leaked: list[dict[str, Any]] = []
    public = await join(await realtime_py(intruder.token), run.topic, leaked,
                        private_channel=False)
    assert await public.wait_for(SUBSCRIBED) is None
    owned: list[dict[str, Any]] = []
    mine = await join(await realtime_py(owner.token), run.topic, owned)
    assert await mine.wait_for(SUBSCRIBED) is None
    await run.play(run.steps)
    await until(lambda: completed(owned))
    await asyncio.sleep(0.2)
    assert leaked == []


async def test_forced_disconnect_is_caught_up_by_polling(
        api: Api, db: Any, new_user: Callable[[], ApiUser], aef_realtime: AefRealtime,
        realtime_py: Any) -> None:
    user = new_user()
    run = await transformed(api, db, user)
    received: list[dict[str, Any]] = []
    await aef_realtime.caught_up()  # the transform's event is fanned out before the join
    statuses = await join(await realtime_py(user.token), run.topic, received)
    assert await statuses.wait_for(SUBSCRIBED) is None
    first = (await blocking(run.live, 0))["lastSeq"]

    await run.play(run.steps[:3])  # execute, claim, first step
    k = (await blocking(event_rows, db, run.execution_id))[-1]["seq"]
    await until(lambda: bool(received) and received[-1]["payload"]["seq"] == k)

    # The server side cuts the socket without a close frame (a dropped network).
    assert await aef_realtime.drop_subscribers(run.topic) == 1
    error = await statuses.wait_for(CHANNEL_ERROR)
    assert isinstance(error, websockets.exceptions.ConnectionClosedError)
    assert error.rcvd is None, "no close frame: an abrupt disconnect"
    await until(lambda: aef_realtime.subscribers(run.topic) == 0)

    await run.play(run.steps[3:-1])  # checkpoint, approval, resume, second step: missed
    rows = await blocking(event_rows, db, run.execution_id)
    n = rows[-1]["seq"]
    assert n >= k + 4
    await asyncio.sleep(0.2)
    assert [m["payload"]["seq"] for m in received] == list(range(first + 1, k + 1))

    missed = await blocking(run.live, k)
    assert [e["seq"] for e in missed["events"]] == list(range(k + 1, n + 1))
    assert missed["events"] == [r["message"] for r in rows if r["seq"] > k]
    stored = await blocking(realtime_messages, db, run.execution_id)
    assert missed["events"] == [m["payload"] for m in stored if m["payload"]["seq"] > k]
    assert missed["lastSeq"] == n

    # Back online: a new subscription plus the caught-up seq leave no gap and no duplicate.
    resumed: list[dict[str, Any]] = []
    again = await join(await realtime_py(user.token), run.topic, resumed)
    assert await again.wait_for(SUBSCRIBED) is None
    await run.play(run.steps[-1:])
    await until(lambda: completed(resumed))
    rows = await blocking(event_rows, db, run.execution_id)
    seen = [m["payload"]["seq"] for m in received + resumed] + [
        e["seq"] for e in missed["events"]]
    assert sorted(seen) == list(range(first + 1, rows[-1]["seq"] + 1))
    assert_delivered(resumed, rows, after=n)


# CI runs this module on Postgres 15 and 17 (scripts/test.sh)
pytestmark = pytest.mark.supabase
