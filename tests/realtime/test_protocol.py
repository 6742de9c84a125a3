"""The wire protocol frame by frame, for serializers 1.0.0 and 2.0.0."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from local.realtime.serializers import encode_user_broadcast_push
from tests.realtime.conftest import RunningServer, as_sent, make_token, seconds_to_expiry
from tests.realtime.phx import PhxClient

VSNS = ["1.0.0", "2.0.0"]
pytestmark = pytest.mark.asyncio(loop_scope="session")


def unauthorized(topic: str) -> dict[str, object]:
    return {"status": "error", "response": {
        "reason": f"Unauthorized: You do not have permissions to read from this Channel topic: "
                  f"{topic}"}}


async def send(server: RunningServer, topic: str, event: str, payloads: list[dict[str, object]],
               *, private: bool = True) -> None:
    await asyncio.to_thread(server.send, topic, event, payloads, private=private)


@pytest.fixture
def user() -> str:
    return str(uuid.uuid4())


@pytest.mark.parametrize("vsn", VSNS)
async def test_heartbeat_is_answered_on_topic_phoenix(realtime_server: RunningServer,
                                                      vsn: str) -> None:
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        await client.push("phoenix", "heartbeat", {}, ref="41")
        reply = await client.recv()
        if vsn == "1.0.0":
            assert json.loads(reply.raw) == {"topic": "phoenix", "event": "phx_reply",
                                             "payload": {"status": "ok", "response": {}},
                                             "ref": "41"}
        else:
            assert json.loads(reply.raw) == [None, "41", "phoenix", "phx_reply",
                                             {"status": "ok", "response": {}}]
        await client.push("phoenix", "heartbeat", {}, ref=None)  # realtime-py sends ref null
        assert (await client.recv()).payload == {"status": "ok", "response": {}}
    finally:
        await client.close()


async def test_connection_needs_a_valid_api_key_and_known_vsn(
        realtime_server: RunningServer) -> None:
    for url in (realtime_server.socket_url("1.0.0", apikey=""),
                realtime_server.socket_url("1.0.0", apikey=make_token(None, role="anon",
                                                                      secret="x" * 40)),
                realtime_server.socket_url("3.0.0")):
        with pytest.raises(InvalidStatus) as refused:
            await PhxClient.open(url, "1.0.0")
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize("vsn", VSNS)
async def test_private_channel_gets_database_broadcasts_in_order(
        realtime_server: RunningServer, user: str, vsn: str) -> None:
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        _, reply = await client.join(topic, make_token(user))
        assert reply.payload == {"status": "ok", "response": {"postgres_changes": []}}
        assert reply.topic == f"realtime:{topic}"
        await send(realtime_server, topic, "step", [{"n": n, "text": "é"} for n in range(20)])
        frames = [await client.recv() for _ in range(20)]
    finally:
        await client.close()
    assert [as_sent(f.payload["payload"]) for f in frames] == [
        {"n": n, "text": "é"} for n in range(20)]
    for frame in frames:
        assert frame.topic == f"realtime:{topic}"
        assert frame.event == "broadcast"
        assert frame.payload["type"] == "broadcast" and frame.payload["event"] == "step"
        assert uuid.UUID(frame.payload["meta"]["id"])
        # 2.0.0 carries database broadcasts as kind-4 binary frames, 1.0.0 as JSON text.
        assert frame.binary is (vsn == "2.0.0")
    assert len({f.payload["meta"]["id"] for f in frames}) == 20


@pytest.mark.parametrize("vsn", VSNS)
async def test_another_users_token_is_refused_with_realtimes_reason(
        realtime_server: RunningServer, user: str, vsn: str) -> None:
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        _, reply = await client.join(topic, make_token(str(uuid.uuid4())))
        assert reply.payload == unauthorized(topic)
        # The anon key alone (role anon) is refused the same way.
        _, reply = await client.join(topic, None)
        assert reply.payload == unauthorized(topic)
        await send(realtime_server, topic, "step", [{"n": 1}])
        await client.expect_silence(0.3)
    finally:
        await client.close()


async def test_public_and_private_messages_stay_apart(realtime_server: RunningServer,
                                                     user: str) -> None:
    topic = f"room:{user}"
    private = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    public = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        assert (await private.join(topic, make_token(user)))[1].payload["status"] == "ok"
        assert (await public.join(topic, None, private=False))[1].payload["status"] == "ok"
        await send(realtime_server, topic, "secret", [{"p": True}], private=True)
        await send(realtime_server, topic, "open", [{"p": False}], private=False)
        assert (await private.recv()).payload["event"] == "secret"
        assert (await public.recv()).payload["event"] == "open"
        await private.expect_silence(0.2)
        await public.expect_silence(0.2)
    finally:
        await private.close()
        await public.close()


@pytest.mark.parametrize("vsn", VSNS)
async def test_leave_replies_ok_then_closes_the_channel(realtime_server: RunningServer,
                                                       user: str, vsn: str) -> None:
    topic = f"realtime:room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        join_ref, _ = await client.join(f"room:{user}", make_token(user))
        await client.push(topic, "phx_leave", {}, ref="99", join_ref=join_ref)
        reply = await client.recv()
        assert (reply.event, reply.ref, reply.payload) == ("phx_reply", "99",
                                                          {"status": "ok", "response": {}})
        close = await client.recv()
        assert (close.event, close.ref, close.payload) == ("phx_close", join_ref, {})
        if vsn == "2.0.0":
            assert close.join_ref == join_ref
        await send(realtime_server, f"room:{user}", "step", [{"n": 1}])
        await client.expect_silence(0.3)
        await client.push(topic, "broadcast", {"type": "broadcast", "event": "x", "payload": {}},
                          ref="100", join_ref=join_ref)
        stray = await client.recv()
        assert stray.payload == {"status": "error", "response": {"reason": "unmatched topic"}}
    finally:
        await client.close()


@pytest.mark.parametrize("vsn", VSNS)
async def test_access_token_refresh_keeps_the_channel_open(realtime_server: RunningServer,
                                                          user: str, vsn: str) -> None:
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        first = make_token(user, ttl=2)
        join_ref, reply = await client.join(topic, first)
        assert reply.payload["status"] == "ok"
        await client.push(f"realtime:{topic}", "access_token",
                          {"access_token": make_token(user, ttl=600)}, ref=client.next_ref(),
                          join_ref=join_ref)
        # Past the first token's expiry: no system message, no close.
        await client.expect_silence(seconds_to_expiry(first) + 0.5)
        await send(realtime_server, topic, "step", [{"after": "refresh"}])
        assert as_sent((await client.recv()).payload["payload"]) == {"after": "refresh"}
    finally:
        await client.close()


@pytest.mark.parametrize("vsn", VSNS)
async def test_expired_token_gets_a_system_message_and_a_close(realtime_server: RunningServer,
                                                              user: str, vsn: str) -> None:
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        join_ref, reply = await client.join(topic, make_token(user, ttl=2))
        assert reply.payload["status"] == "ok"
        system = await client.recv(within=4)
        assert system.event == "system" and system.ref is None
        assert set(system.payload) == {"extension", "status", "message", "channel"}
        assert (system.payload["extension"], system.payload["status"],
                system.payload["channel"]) == ("system", "error", topic)
        assert re.fullmatch(r"Token has expired \d+ seconds ago", system.payload["message"])
        close = await client.recv()
        assert (close.event, close.ref) == ("phx_close", join_ref)
    finally:
        await client.close()


@pytest.mark.parametrize("vsn", VSNS)
async def test_access_token_of_another_user_closes_a_private_channel(
        realtime_server: RunningServer, user: str, vsn: str) -> None:
    topic = f"room:{user}"
    client = await PhxClient.open(realtime_server.socket_url(vsn), vsn)
    try:
        join_ref, _ = await client.join(topic, make_token(user))
        await client.push(f"realtime:{topic}", "access_token",
                          {"access_token": make_token(str(uuid.uuid4()))},
                          ref=client.next_ref(), join_ref=join_ref)
        system = await client.recv()
        assert system.payload == {
            "extension": "system", "status": "error", "channel": topic,
            "message": f"You do not have permissions to read from this Channel topic: {topic}"}
        assert (await client.recv()).event == "phx_close"
    finally:
        await client.close()


async def test_expired_or_forged_token_is_refused_at_join(realtime_server: RunningServer,
                                                         user: str) -> None:
    client = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        _, reply = await client.join(f"room:{user}", make_token(user, ttl=-5))
        assert re.fullmatch(r"InvalidJWTToken: Token has expired [5-7] seconds ago",
                            reply.payload["response"]["reason"])
        _, reply = await client.join(f"room:{user}", make_token(user, secret="y" * 40))
        assert reply.payload == {"status": "error", "response": {
            "reason": "JwtSignatureError: Failed to validate JWT signature"}}
        _, reply = await client.join("", make_token(user))
        assert reply.payload == {"status": "error", "response": {
            "reason": "TopicNameRequired: You must provide a topic name"}}
    finally:
        await client.close()


async def test_client_broadcasts_reach_other_sockets_in_both_encodings(
        realtime_server: RunningServer, user: str) -> None:
    topic = f"room:{user}"
    token = make_token(user)
    v2_sender = await PhxClient.open(realtime_server.socket_url("2.0.0"), "2.0.0")
    v2_receiver = await PhxClient.open(realtime_server.socket_url("2.0.0"), "2.0.0")
    v1_receiver = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        join_ref, _ = await v2_sender.join(topic, token, ack=True)
        await v2_receiver.join(topic, token)
        await v1_receiver.join(topic, token)
        # Binary user broadcast push (kind 3), as supabase-js sends it.
        await v2_sender.send_raw(encode_user_broadcast_push(
            topic=f"realtime:{topic}", event="cursor", payload=b'{"x":1}', is_json=True,
            join_ref=join_ref, ref="50"))
        ack = await v2_sender.recv()
        assert (ack.event, ack.ref, ack.payload) == ("phx_reply", "50",
                                                    {"status": "ok", "response": {}})
        got = await v2_receiver.recv()
        assert got.binary and got.payload == {"type": "broadcast", "event": "cursor",
                                              "payload": {"x": 1}}
        got = await v1_receiver.recv()
        assert got.payload == {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}
        # A text broadcast stays a text frame.
        await v1_receiver.push(f"realtime:{topic}", "broadcast",
                               {"type": "broadcast", "event": "hello", "payload": {"y": 2}},
                               ref="7", join_ref=None)
        got = await v2_receiver.recv()
        assert not got.binary and got.payload == {"type": "broadcast", "event": "hello",
                                                  "payload": {"y": 2}}
        # broadcast.self is false: the sender's own "cursor" never came back, only "hello".
        assert (await v2_sender.recv()).payload["event"] == "hello"
        await v1_receiver.expect_silence(0.2)
    finally:
        for client in (v2_sender, v2_receiver, v1_receiver):
            await client.close()


async def test_private_client_broadcast_needs_the_write_policy(
        realtime_server: RunningServer, user: str) -> None:
    """`room:<uid>` is readable by its owner; the service role may read every room."""
    topic = f"room:{user}"
    owner = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    service = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        await owner.join(topic, make_token(user))
        service_key = make_token(None, role="service_role")
        _, reply = await service.join(topic, service_key)  # bypasses RLS
        assert reply.payload["status"] == "ok"
        await owner.push(f"realtime:{topic}", "broadcast",
                         {"type": "broadcast", "event": "mine", "payload": {}}, ref="3")
        assert (await service.recv()).payload["event"] == "mine"
    finally:
        await owner.close()
        await service.close()


async def test_presence_track_and_untrack(realtime_server: RunningServer, user: str) -> None:
    topic = f"room:{user}"
    first = await PhxClient.open(realtime_server.socket_url("2.0.0"), "2.0.0")
    second = await PhxClient.open(realtime_server.socket_url("1.0.0"), "1.0.0")
    try:
        ref, _ = await first.join(topic, make_token(user), presence=True)
        assert (await first.recv()).event == "presence_state"
        await first.push(f"realtime:{topic}", "presence",
                         {"type": "presence", "event": "track", "payload": {"name": "ada"}},
                         ref="9", join_ref=ref)
        diff = await first.recv_until("presence_diff")
        [(key, entry)] = diff.payload["joins"].items()
        assert entry["metas"][0]["name"] == "ada" and entry["metas"][0]["phx_ref"]
        await second.join(topic, make_token(user), presence=True)
        state = await second.recv()
        assert state.event == "presence_state" and key in state.payload
        await first.close()
        leave = await second.recv_until("presence_diff")
        assert leave.payload["joins"] == {} and key in leave.payload["leaves"]
    finally:
        await second.close()
