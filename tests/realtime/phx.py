"""A bare Phoenix-protocol client for asserting exact frames (both serializers).

It decodes what the server sends independently of `local.realtime.serializers`, from the
protocol description (JSON object / JSON array / kind-4 binary), so the server's encoder is
checked against the spec and not against itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


@dataclass(frozen=True)
class Frame:
    topic: str
    event: str
    payload: Any
    ref: str | None
    join_ref: str | None
    binary: bool = False
    raw: str | bytes = ""


def decode_server_frame(raw: str | bytes, vsn: str) -> Frame:
    if isinstance(raw, bytes):
        assert vsn == "2.0.0", "binary frames exist only in 2.0.0"
        assert raw[0] == 4, f"unexpected binary kind {raw[0]}"
        topic_size, event_size, meta_size, encoding = raw[1:5]
        at = 5
        topic = raw[at:at + topic_size].decode()
        at += topic_size
        user_event = raw[at:at + event_size].decode()
        at += event_size
        meta = json.loads(raw[at:at + meta_size]) if meta_size else None
        at += meta_size
        body: Any = json.loads(raw[at:]) if encoding == 1 else raw[at:]
        payload: dict[str, Any] = {"type": "broadcast", "event": user_event, "payload": body}
        if meta is not None:
            payload["meta"] = meta
        return Frame(topic, "broadcast", payload, None, None, True, raw)
    data = json.loads(raw)
    if vsn == "1.0.0":
        assert isinstance(data, dict)
        assert set(data) == {"topic", "event", "payload", "ref"}, data
        return Frame(data["topic"], data["event"], data["payload"], data["ref"], None, False, raw)
    assert isinstance(data, list) and len(data) == 5, data
    join_ref, ref, topic, event, payload = data
    return Frame(topic, event, payload, ref, join_ref, False, raw)


class PhxClient:
    def __init__(self, ws: ClientConnection, vsn: str) -> None:
        self.ws = ws
        self.vsn = vsn
        self._ref = 0

    @classmethod
    async def open(cls, url: str, vsn: str) -> PhxClient:
        return cls(await connect(url, open_timeout=5), vsn)

    async def close(self) -> None:
        await self.ws.close()

    def next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    async def push(self, topic: str, event: str, payload: Any, *, ref: str | None = None,
                   join_ref: str | None = None) -> str | None:
        if self.vsn == "1.0.0":
            text = json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref,
                               "join_ref": join_ref})
        else:
            text = json.dumps([join_ref, ref, topic, event, payload])
        await self.ws.send(text)
        return ref

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, within: float = 5.0) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        return decode_server_frame(raw, self.vsn)

    async def recv_until(self, event: str, within: float = 5.0) -> Frame:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.recv(max(deadline - loop.time(), 0.01))
            if frame.event == event:
                return frame

    async def expect_silence(self, seconds: float) -> None:
        try:
            frame = await self.recv(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {frame}")

    async def join(self, topic: str, token: str | None, *, private: bool = True,
                   self_broadcast: bool = False, ack: bool = False,
                   presence: bool = False) -> tuple[str, Frame]:
        ref = self.next_ref()
        payload: dict[str, Any] = {"config": {
            "broadcast": {"ack": ack, "self": self_broadcast},
            "presence": {"enabled": presence, "key": ""},
            "postgres_changes": [],
            "private": private,
        }}
        if token is not None:
            payload["access_token"] = token
        await self.push(f"realtime:{topic}", "phx_join", payload, ref=ref, join_ref=ref)
        reply = await self.recv_until("phx_reply")
        assert reply.ref == ref
        return ref, reply
