"""Phoenix channel serializers as Supabase Realtime speaks them: vsn 1.0.0 and 2.0.0.

1.0.0 (realtime-py's default) is one JSON object per text frame. Like Phoenix's V1
JSONSerializer, what the server sends carries only `topic`, `event`, `payload` and `ref`.

2.0.0 (supabase-js's default) is a JSON array `[join_ref, ref, topic, event, payload]` per text
frame, plus two binary frames for Broadcast (supabase/realtime `RealtimeWeb.Socket.V2Serializer`):

* kind 3, user broadcast push (client -> server):
  `3, len(join_ref), len(ref), len(topic), len(event), len(meta), encoding, join_ref, ref, topic,
  event, meta, payload`
* kind 4, user broadcast (server -> client):
  `4, len(topic), len(event), len(meta), encoding, topic, event, meta, payload`

Sizes are one byte each (at most 255); encoding is 0 for binary and 1 for JSON; meta is a JSON
object or empty. A broadcast that came in as a text frame goes out as a text frame, and one that
came in binary (or from `realtime.messages`) goes out as kind 4 — to 1.0.0 clients it is
converted to the JSON broadcast shape, as Realtime's MessageDispatcher does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

VSN_1 = "1.0.0"
VSN_2 = "2.0.0"
SUPPORTED_VSN = (VSN_1, VSN_2)

KIND_PUSH = 0
KIND_REPLY = 1
KIND_BROADCAST = 2
KIND_USER_BROADCAST_PUSH = 3
KIND_USER_BROADCAST = 4
ENCODING_BINARY = 0
ENCODING_JSON = 1
MAX_FIELD_BYTES = 255

Frame = str | bytes


class ProtocolError(ValueError):
    """A frame that does not follow the negotiated serializer."""


@dataclass(frozen=True, slots=True)
class UserBroadcast:
    """A broadcast whose user payload travels as raw bytes (binary frames, database messages).

    `payload` is the user payload exactly as received: JSON text when `is_json`, else opaque
    bytes. Keeping the bytes avoids re-encoding a payload for every subscriber.
    """

    event: str
    payload: bytes
    is_json: bool = True
    meta: dict[str, Any] | None = None

    def to_json_payload(self) -> dict[str, Any]:
        """The text-frame shape `{event, payload, type, meta?}`; JSON payloads only."""
        if not self.is_json:
            raise ProtocolError("a binary user payload has no JSON form")
        body: dict[str, Any] = {
            "event": self.event,
            "payload": json.loads(self.payload),
            "type": "broadcast",
        }
        if self.meta:
            body["meta"] = self.meta
        return body


@dataclass(frozen=True, slots=True)
class Message:
    """One Phoenix message. `payload` is a JSON value, or a `UserBroadcast` for kind-3 frames."""

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


class Serializer(Protocol):
    vsn: str

    def decode(self, frame: Frame) -> Message: ...

    def encode(self, message: Message) -> Frame: ...

    def encode_reply(
        self, topic: str, join_ref: str | None, ref: str | None, status: str, response: Any
    ) -> Frame: ...

    def encode_broadcast(self, topic: str, broadcast: dict[str, Any] | UserBroadcast) -> Frame: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _ref(value: Any) -> str | None:
    """Refs are strings on the wire; some clients send numbers, Phoenix keeps them as given."""
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError("ref must be a string")


def _decode_text(frame: Frame) -> Any:
    if isinstance(frame, bytes):
        raise ProtocolError("binary frames are not part of serializer 1.0.0")
    try:
        return json.loads(frame)
    except ValueError as exc:
        raise ProtocolError("frame is not JSON") from exc


def _check_fields(topic: Any, event: Any) -> tuple[str, str]:
    if not isinstance(topic, str) or not isinstance(event, str):
        raise ProtocolError("topic and event must be strings")
    return topic, event


class V1Serializer:
    """vsn 1.0.0: JSON objects in text frames."""

    vsn = VSN_1

    def decode(self, frame: Frame) -> Message:
        data = _decode_text(frame)
        if not isinstance(data, dict):
            raise ProtocolError("a 1.0.0 message is a JSON object")
        topic, event = _check_fields(data.get("topic"), data.get("event"))
        payload = data.get("payload")
        return Message(topic, event, payload if payload is not None else {},
                       _ref(data.get("ref")), _ref(data.get("join_ref")))

    def encode(self, message: Message) -> Frame:
        return _dumps({"topic": message.topic, "event": message.event,
                       "payload": message.payload, "ref": message.ref})

    def encode_reply(
        self, topic: str, join_ref: str | None, ref: str | None, status: str, response: Any
    ) -> Frame:
        return self.encode(Message(topic, "phx_reply", {"status": status, "response": response},
                                   ref, join_ref))

    def encode_broadcast(self, topic: str, broadcast: dict[str, Any] | UserBroadcast) -> Frame:
        payload = broadcast.to_json_payload() if isinstance(broadcast, UserBroadcast) else broadcast
        return self.encode(Message(topic, "broadcast", payload))


def _sized(value: str, field: str) -> bytes:
    raw = value.encode()
    if len(raw) > MAX_FIELD_BYTES:
        raise ProtocolError(f"{field} is longer than {MAX_FIELD_BYTES} bytes")
    return raw


class V2Serializer:
    """vsn 2.0.0: JSON arrays in text frames, user broadcasts in binary frames."""

    vsn = VSN_2

    def decode(self, frame: Frame) -> Message:
        if isinstance(frame, bytes):
            return self._decode_binary(frame)
        data = _decode_text(frame)
        if not isinstance(data, list) or len(data) < 5:
            raise ProtocolError("a 2.0.0 text message is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = data[:5]
        topic, event = _check_fields(topic, event)
        return Message(topic, event, payload if payload is not None else {}, _ref(ref),
                       _ref(join_ref))

    def _decode_binary(self, frame: bytes) -> Message:
        if not frame:
            raise ProtocolError("empty binary frame")
        kind = frame[0]
        if kind != KIND_USER_BROADCAST_PUSH:
            raise ProtocolError(f"unsupported binary message kind {kind}")
        if len(frame) < 7:
            raise ProtocolError("truncated user broadcast push")
        join_ref_size, ref_size, topic_size, event_size, meta_size, encoding = frame[1:7]
        offset = 7
        parts: list[str] = []
        for size in (join_ref_size, ref_size, topic_size, event_size, meta_size):
            chunk = frame[offset:offset + size]
            if len(chunk) != size:
                raise ProtocolError("truncated user broadcast push")
            try:
                parts.append(chunk.decode())
            except UnicodeDecodeError as exc:
                raise ProtocolError("user broadcast push header is not UTF-8") from exc
            offset += size
        join_ref, ref, topic, event, meta_text = parts
        meta: dict[str, Any] | None = None
        if meta_text:
            try:
                loaded = json.loads(meta_text)
            except ValueError as exc:
                raise ProtocolError("user broadcast metadata is not JSON") from exc
            if not isinstance(loaded, dict):
                raise ProtocolError("user broadcast metadata is not a JSON object")
            meta = loaded
        body = frame[offset:]
        is_json = encoding == ENCODING_JSON
        if is_json:
            try:
                json.loads(body)
            except ValueError as exc:
                raise ProtocolError("user broadcast payload is not JSON") from exc
        return Message(topic, "broadcast", UserBroadcast(event, bytes(body), is_json, meta),
                       ref or None, join_ref or None)

    def encode(self, message: Message) -> Frame:
        return _dumps([message.join_ref, message.ref, message.topic, message.event,
                       message.payload])

    def encode_reply(
        self, topic: str, join_ref: str | None, ref: str | None, status: str, response: Any
    ) -> Frame:
        return self.encode(Message(topic, "phx_reply", {"status": status, "response": response},
                                   ref, join_ref))

    def encode_broadcast(self, topic: str, broadcast: dict[str, Any] | UserBroadcast) -> Frame:
        if not isinstance(broadcast, UserBroadcast):
            return self.encode(Message(topic, "broadcast", broadcast))
        topic_raw = _sized(topic, "topic")
        event_raw = _sized(broadcast.event, "event")
        meta_raw = _sized(_dumps(broadcast.meta), "metadata") if broadcast.meta else b""
        header = bytes((KIND_USER_BROADCAST, len(topic_raw), len(event_raw), len(meta_raw),
                        ENCODING_JSON if broadcast.is_json else ENCODING_BINARY))
        return b"".join((header, topic_raw, event_raw, meta_raw, broadcast.payload))


def encode_user_broadcast_push(
    *,
    topic: str,
    event: str,
    payload: bytes,
    is_json: bool,
    join_ref: str | None,
    ref: str | None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """A kind-3 frame as supabase-js builds it; used by tests and benchmarks to speak 2.0.0."""
    parts = [_sized(join_ref or "", "join_ref"), _sized(ref or "", "ref"), _sized(topic, "topic"),
             _sized(event, "event"), _sized(_dumps(meta), "metadata") if meta else b""]
    header = bytes((KIND_USER_BROADCAST_PUSH, *(len(p) for p in parts),
                    ENCODING_JSON if is_json else ENCODING_BINARY))
    return b"".join((header, *parts, payload))


def decode_user_broadcast(frame: bytes) -> tuple[str, UserBroadcast]:
    """Read a kind-4 frame (what a 2.0.0 client receives); used by tests and benchmarks."""
    if len(frame) < 5 or frame[0] != KIND_USER_BROADCAST:
        raise ProtocolError("not a user broadcast frame")
    topic_size, event_size, meta_size, encoding = frame[1:5]
    offset = 5
    topic = frame[offset:offset + topic_size].decode()
    offset += topic_size
    event = frame[offset:offset + event_size].decode()
    offset += event_size
    meta_text = frame[offset:offset + meta_size].decode()
    offset += meta_size
    meta = json.loads(meta_text) if meta_text else None
    return topic, UserBroadcast(event, frame[offset:], encoding == ENCODING_JSON, meta)


def serializer_for(vsn: str | None) -> Serializer:
    """The serializer for a `vsn` query parameter; Realtime defaults to 1.0.0."""
    if vsn in (None, "", VSN_1):
        return V1Serializer()
    if vsn == VSN_2:
        return V2Serializer()
    raise ProtocolError(f"unsupported serializer version {vsn!r}")

