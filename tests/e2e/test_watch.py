"""Following an execution live: Realtime through supabase-py, `/live` polling as fallback.

The follower runs in-process against the real stack; no runner is needed: an execution that
is transformed (idle) and then stopped through the API produces live messages of its own.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest

from local.keys import SigningKey, load_or_create, mint_user_token
from local.watch import (
    WAIT,
    ApiClient,
    ApiError,
    AskPerson,
    AutoApprove,
    Follower,
    LiveState,
    PlainView,
    ReadOnly,
    RealtimeConfig,
)
from tests.e2e.conftest import RunningStack, aef
from tests.fixtures import GMAIL_WORKFLOW, load_sop


def message(seq: int, status: str, *, logs: list[dict[str, Any]] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"type": "execution_update", "timestamp": f"2026-01-01T00:00:{seq:02d}.000Z",
            "seq": seq, "execution": {"id": "e", "status": status, "currentStep": "s1",
                                      "progress": seq},
            "browser": {"screenshot": None}, "logs": logs or [], **extra}


def test_live_state_keeps_the_newest_and_every_log_once() -> None:
    state = LiveState("e")
    assert [e["id"] for e in state.apply(message(2, "running", logs=[{"id": 1}, {"id": 2}]))] \
        == [1, 2]
    assert state.apply(message(1, "queued", logs=[{"id": 2}, {"id": 3}])) == [{"id": 3}]
    assert state.status == "running" and state.last_seq == 2  # the older message lost
    state.apply(message(2, "paused"))
    assert state.status == "running"  # the same seq again is a duplicate
    state.apply(message(2, "paused"), snapshot=True)
    assert state.status == "paused"  # but the /live snapshot refreshes it
    state.apply(message(3, "waiting_checkpoint",
                        checkpoints=[{"id": "c1", "status": "pending"},
                                     {"id": "c0", "status": "approved"}]))
    assert [c["id"] for c in state.checkpoints] == ["c1"]


async def test_auto_approve_retries_once_then_skips() -> None:
    decider = AutoApprove()
    state = LiveState("e")
    error = {"message": "boom", "recovery_options": [{"action": "retry"}, {"action": "skip"},
                                                     {"action": "stop"}]}
    state.apply(message(1, "waiting_recovery", error=error))
    assert await decider.checkpoint(state, {"id": "c"}) == "approve"
    assert await decider.recover(state) == "retry"
    assert await decider.recover(state) == "skip"
    state.apply(message(2, "waiting_recovery", error={**error, "auto_retry_in": 30}))
    assert await decider.recover(state) == WAIT  # the runner retries by itself


async def test_ask_person_insists_on_a_valid_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("maybe\nskip\n\n"))
    out = io.StringIO()
    decider = AskPerson(PlainView(out))
    state = LiveState("e")
    checkpoint = {"id": "c1", "title": "Send the email?", "stepId": "send",
                  "description": "Sends it", "defaultAction": "reject", "expiresAt": "soon"}
    assert await decider.checkpoint(state, checkpoint) == "skip"
    assert "please answer one of: approve, reject, skip" in out.getvalue()
    assert await decider.checkpoint(state, checkpoint) == "approve"  # empty = the default
    state.apply(message(1, "waiting_recovery", error={
        "message": "boom", "recovery_options": [{"action": "retry"}, {"action": "stop"}]}))
    monkeypatch.setattr("sys.stdin", io.StringIO("retry\n"))
    assert await decider.recover(state) == "retry"
    assert "Error at step s1: boom" in out.getvalue()


async def start_idle_execution(stack: RunningStack, token: str) -> str:
    sop = load_sop(GMAIL_WORKFLOW)
    api = ApiClient(stack.url, token)
    try:
        return str((await api.transform(sop))["executionId"])
    finally:
        await api.close()


async def stop(stack: RunningStack, token: str, execution_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        response = await http.delete(f"/api/aef/stop/{execution_id}",
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text


async def follow_until_stopped(stack: RunningStack, token: str,
                               realtime: RealtimeConfig | None) -> LiveState:
    execution_id = await start_idle_execution(stack, token)
    api = ApiClient(stack.url, token)
    follower = Follower(api, execution_id, realtime=realtime, view=PlainView(),
                        decider=ReadOnly())
    task = asyncio.create_task(follower.run(give_up_after=60))
    try:
        for _ in range(200):  # until the follower is subscribed (or has given up on it)
            if follower.state.transport in ("realtime", "polling") and follower.state.last_seq:
                break
            await asyncio.sleep(0.05)
        await stop(stack, token, execution_id)
        return await asyncio.wait_for(task, 30)
    finally:
        await api.close()


async def test_follow_live_over_realtime(stack: RunningStack, demo_token: str) -> None:
    state = await follow_until_stopped(
        stack, demo_token, RealtimeConfig(stack.url, stack.info.anon_key, demo_token))
    assert state.status == "cancelled"
    assert state.transport == "realtime"
    assert state.received_live >= 1  # the stop arrived over the private channel
    assert any(entry["message"] == "Execution stopped" for entry in state.logs)


async def test_without_a_socket_polling_carries_the_run(stack: RunningStack,
                                                        demo_token: str) -> None:
    refused_key = SigningKey.generate().sign({"role": "anon", "exp": 2_000_000_000})
    state = await follow_until_stopped(
        stack, demo_token, RealtimeConfig(stack.url, refused_key, demo_token))
    assert state.status == "cancelled"
    assert state.transport == "polling"
    assert state.received_live == 0
    assert any(entry["message"] == "Execution stopped" for entry in state.logs)


async def test_another_user_cannot_follow(stack: RunningStack, demo_token: str) -> None:
    execution_id = await start_idle_execution(stack, demo_token)
    other = mint_user_token(load_or_create(stack.state.keys),
                            user_id=stack.info.users["reviewer@aef.local"],
                            email="reviewer@aef.local", supabase_url=stack.url)
    api = ApiClient(stack.url, other)
    try:
        follower = Follower(api, execution_id, realtime=None, view=PlainView(),
                            decider=ReadOnly())
        with pytest.raises(ApiError) as refused:
            await follower.run(give_up_after=10)
        assert refused.value.status == 404
    finally:
        await api.close()
        await stop(stack, demo_token, execution_id)


def test_aef_watch_cli_follows_to_the_end(stack: RunningStack, demo_token: str) -> None:
    execution_id = asyncio.run(start_idle_execution(stack, demo_token))
    asyncio.run(stop(stack, demo_token, execution_id))
    result = aef(stack.state, "watch", execution_id, "--plain")
    assert result.returncode == 1  # not completed
    assert f"Execution {execution_id}: cancelled" in result.stdout
    assert "Execution stopped" in result.stdout



def test_a_checkpoint_shows_its_preview_and_what_each_answer_does() -> None:
    """`aef watch` / `aef demo`: values, target names, the screenshot link, the choices."""
    from local.watch import describe_checkpoint
    from tests.api.helpers import CHOICES, preview_of

    text = "\n".join(describe_checkpoint({
        "id": "c1", "title": "Approve: Add investor record to CRM", "stepId": "add",
        "description": "Creates a record", "defaultAction": "pause", "expiresAt": "soon",
        "preview": preview_of("add"), "choices": CHOICES}))
    assert "Fill the Name field = Marcus Adeyemi  [#name: not on the page yet]" in text
    assert ('Type \u2022\u2022\u2022\u2022 into the Password field = \u2022\u2022\u2022\u2022  '
            '[textbox "Password": found]') in text
    assert "preview screenshot: https://s3.example/preview.jpg?sig=1" in text
    assert "skip: Skip this step and go on" in text
    assert "reject: Stop the whole execution" in text
    assert "if nobody answers by soon: pause" in text
