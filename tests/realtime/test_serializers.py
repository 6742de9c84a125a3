"""Serializer byte layouts, checked against the examples of Supabase's protocol page."""

from __future__ import annotations

import json

import pytest

from local.realtime.serializers import (
    Message,
    ProtocolError,
    UserBroadcast,
    V1Serializer,
    V2Serializer,
    decode_user_broadcast,
    encode_user_broadcast_push,
    serializer_for,
)

PAYLOAD = b'{"content":"Hello, World!"}'


def test_user_broadcast_push_is_decoded_like_supabase_documents_it() -> None:
    # 0x03, join_ref "10", ref "1", topic "realtime:chat-room", event "user-event", no meta, JSON
    frame = (bytes([0x03, 0x02, 0x01, 0x12, 0x0A, 0x00, 0x01]) + b"10" + b"1"
             + b"realtime:chat-room" + b"user-event" + PAYLOAD)
    message = V2Serializer().decode(frame)
    assert message == Message("realtime:chat-room", "broadcast",
                              UserBroadcast("user-event", PAYLOAD, True, None), "1", "10")
    assert encode_user_broadcast_push(topic="realtime:chat-room", event="user-event",
                                      payload=PAYLOAD, is_json=True, join_ref="10",
                                      ref="1") == frame


def test_user_broadcast_is_encoded_like_supabase_documents_it() -> None:
    meta = {"id": "006554ce-d22d-469c-877a-88bef47214a3"}
    frame = V2Serializer().encode_broadcast(
        "realtime:chat-room", UserBroadcast("message", PAYLOAD, True, meta))
    assert isinstance(frame, bytes)
    assert frame[:5] == bytes([0x04, 0x12, 0x07, 0x2D, 0x01])
    assert frame[5:] == (b"realtime:chat-room" + b"message"
                         + b'{"id":"006554ce-d22d-469c-877a-88bef47214a3"}' + PAYLOAD)
    topic, broadcast = decode_user_broadcast(frame)
    assert (topic, broadcast) == ("realtime:chat-room", UserBroadcast("message", PAYLOAD, True,
                                                                      meta))


def test_a_user_broadcast_reaches_1_0_0_clients_as_json() -> None:
    frame = V1Serializer().encode_broadcast(
        "realtime:room", UserBroadcast("step", b'{"n": 1}', True, {"id": "abc"}))
    assert json.loads(frame) == {
        "topic": "realtime:room", "event": "broadcast", "ref": None,
        "payload": {"event": "step", "payload": {"n": 1}, "type": "broadcast",
                    "meta": {"id": "abc"}},
    }
    with pytest.raises(ProtocolError):  # a binary user payload has no 1.0.0 form
        V1Serializer().encode_broadcast("realtime:room", UserBroadcast("b", b"\x00", False))


def test_text_frames_of_both_versions() -> None:
    v1, v2 = V1Serializer(), V2Serializer()
    joined = Message("realtime:r", "phx_join", {"config": {}}, "1", "1")
    assert v1.decode(json.dumps({"topic": "realtime:r", "event": "phx_join",
                                 "payload": {"config": {}}, "ref": "1", "join_ref": "1"})) == joined
    assert v2.decode('["1","1","realtime:r","phx_join",{"config":{}}]') == joined
    assert v1.decode('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}').ref == "7"
    assert json.loads(v1.encode_reply("realtime:r", "1", "2", "ok", {})) == {
        "topic": "realtime:r", "event": "phx_reply", "ref": "2",
        "payload": {"status": "ok", "response": {}}}
    assert json.loads(v2.encode_reply("realtime:r", "1", "2", "ok", {})) == [
        "1", "2", "realtime:r", "phx_reply", {"status": "ok", "response": {}}]


@pytest.mark.parametrize("frame", [
    b"\x03\x01",  # truncated header
    bytes([0x03, 0x00, 0x00, 0x05, 0x01, 0x00, 0x01]) + b"ab",  # topic shorter than its size
    bytes([0x00, 0x00]),  # a binary push kind this server does not take
    bytes([0x03, 0x00, 0x00, 0x01, 0x01, 0x00, 0x01]) + b"tenot json",
    "[1, 2]",
    "not json",
])
def test_malformed_2_0_0_frames_are_protocol_errors(frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        V2Serializer().decode(frame)


def test_1_0_0_has_no_binary_frames_and_vsn_is_checked() -> None:
    with pytest.raises(ProtocolError):
        V1Serializer().decode(b"\x03")
    assert serializer_for(None).vsn == "1.0.0"
    assert serializer_for("2.0.0").vsn == "2.0.0"
    with pytest.raises(ProtocolError):
        serializer_for("3.0.0")
    with pytest.raises(ProtocolError):
        V2Serializer().encode_broadcast("t" * 256, UserBroadcast("e", b"{}"))
