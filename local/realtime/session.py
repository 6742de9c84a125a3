"""One WebSocket: the Phoenix socket and the Realtime channels joined over it.

Behaviour follows Phoenix.Socket / Phoenix.Channel.Server and supabase/realtime's
RealtimeChannel:

* `heartbeat` on topic `phoenix` is answered `{status: ok, response: {}}` with its ref.
* `phx_join` on `realtime:<topic>` replies `{status: ok, response: {postgres_changes: []}}`, or
  `{status: error, response: {reason: "<Code>: <message>"}}` with Realtime's texts — for a private
  channel the caller must pass the RLS probe (`authorization.read_policies`). Joining a topic
  already joined closes the old join (`phx_close`) first, as Phoenix does.
* `phx_leave` replies ok, then `phx_close` ends the channel.
* `access_token` swaps the channel's token: re-verified and, for a private channel, re-probed;
  a refusal pushes a `system` error message and closes the channel.
* The token is re-checked when it expires and every 5 minutes (Realtime's `confirm_token`); an
  expired or revoked token pushes `system` `{extension: system, status: error, message, channel}`
  and then `phx_close`.
* `broadcast` from a client reaches the other channels on the topic (itself only with
  `broadcast.self`); a private channel needs the RLS write probe to pass. `ack` replies ok.
* `presence` track/untrack maintain Phoenix-style presence (`presence_state`, `presence_diff`).
* A message for a topic that is not joined replies `{reason: "unmatched topic"}`.
* A socket silent for longer than the idle timeout (Phoenix: 60 s) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.websockets import WebSocket, WebSocketDisconnect

from local.realtime.authorization import (
    AuthorizationContext,
    AuthorizationUnavailable,
    Extension,
    Policies,
    read_policies,
    write_policy,
)
from local.realtime.hub import TOPIC_PREFIX, Broadcast, RealtimeHub
from local.realtime.serializers import Frame, Message, ProtocolError, Serializer, UserBroadcast
from local.realtime.tokens import TokenClaims, TokenRejected, TokenVerifier

log = logging.getLogger(__name__)

CONFIRM_TOKEN_SECONDS = 300.0
IDLE_TIMEOUT_SECONDS = 60.0
SEND_QUEUE_LIMIT = 10_000
UNMATCHED = {"reason": "unmatched topic"}


def _reason(code: str, message: str) -> dict[str, str]:
    return {"reason": f"{code}: {message}"}


def _unauthorized_message(sub_topic: str) -> str:
    return f"You do not have permissions to read from this Channel topic: {sub_topic}"


DB_UNAVAILABLE = _reason("UnableToConnectToProject",
                         "Realtime was unable to connect to the project database")


class ChannelRefused(Exception):
    def __init__(self, reply: dict[str, str]) -> None:
        super().__init__(reply["reason"])
        self.reply = reply


@dataclass(eq=False)
class Channel:
    """One joined topic on one socket; it is the hub's `Subscriber`."""

    session: Session
    topic: str
    sub_topic: str
    join_ref: str | None
    private: bool
    self_broadcast: bool
    ack_broadcast: bool
    presence_enabled: bool
    presence_key: str
    claims: TokenClaims
    policies: Policies | None = None
    confirm_task: asyncio.Task[None] | None = field(default=None, repr=False)

    def deliver(self, topic: str, broadcast: Broadcast, cache: dict[str, Frame]) -> None:
        serializer = self.session.serializer
        frame = cache.get(serializer.vsn)
        if frame is None:
            try:
                frame = serializer.encode_broadcast(topic, broadcast)
            except ProtocolError as exc:  # e.g. a binary payload for a 1.0.0 client
                log.info("broadcast not deliverable", extra={"topic": topic, "error": str(exc)})
                return
            cache[serializer.vsn] = frame
        self.session.send(frame)

    def push_event(self, event: str, payload: dict[str, Any]) -> None:
        if event.startswith("presence") and not self.presence_enabled:
            return
        self.session.push(self, event, payload)

    def authorization_context(self, claims: TokenClaims) -> AuthorizationContext:
        return AuthorizationContext(self.sub_topic, claims.role, claims.raw, claims.sub,
                                    self.session.headers)


class Session:
    """Serves one WebSocket until it closes."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        hub: RealtimeHub,
        pool: AsyncConnectionPool,
        verifier: TokenVerifier,
        serializer: Serializer,
        socket_claims: TokenClaims,
        headers: Mapping[str, str],
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        confirm_token_seconds: float = CONFIRM_TOKEN_SECONDS,
        log_level: int | None = None,
    ) -> None:
        self.ws = websocket
        self.hub = hub
        self.pool = pool
        self.verifier = verifier
        self.serializer = serializer
        self.socket_claims = socket_claims
        self.headers = dict(headers)
        self.idle_timeout = idle_timeout
        self.confirm_token_seconds = confirm_token_seconds
        self.log_level = log_level
        self.channels: dict[str, Channel] = {}
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue(SEND_QUEUE_LIMIT)
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    # socket loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_forever(), name="realtime-writer")
        try:
            await self._read_forever()
        finally:
            for channel in list(self.channels.values()):
                self._drop(channel)
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, timeout=1)
            writer.cancel()

    async def _read_forever(self) -> None:
        while not self._closing:
            try:
                event = await asyncio.wait_for(self.ws.receive(), timeout=self.idle_timeout)
            except TimeoutError:
                log.info("realtime socket idle; closing")
                await self.close(1000)
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if event["type"] == "websocket.disconnect":
                return
            frame: Frame | None = event.get("text")
            if frame is None:
                frame = event.get("bytes")
            if frame is None:
                continue
            try:
                message = self.serializer.decode(frame)
            except ProtocolError as exc:
                log.info("realtime frame ignored", extra={"error": str(exc)})
                continue
            if self.log_level is not None:
                log.log(self.log_level, "realtime received",
                        extra={"topic": message.topic, "event": message.event})
            await self._handle(message)

    async def _write_forever(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                return
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._closing = True
                return

    def send(self, frame: Frame) -> None:
        """Queue a frame; a client that cannot keep up is disconnected, not waited for."""
        if self._closing:
            return
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("realtime client too slow; closing its socket")
            self._closing = True
            self._closer = asyncio.get_running_loop().create_task(self.close(1013))

    async def close(self, code: int = 1000) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            await self.ws.close(code)

    def reply(self, topic: str, join_ref: str | None, ref: str | None, status: str,
              response: Any) -> None:
        self.send(self.serializer.encode_reply(topic, join_ref, ref, status, response))

    def push(self, channel: Channel, event: str, payload: dict[str, Any]) -> None:
        self.send(self.serializer.encode(Message(channel.topic, event, payload, None,
                                                 channel.join_ref)))

    # dispatch -------------------------------------------------------------------------------

    async def _handle(self, message: Message) -> None:
        if message.topic == "phoenix" and message.event == "heartbeat":
            self.reply("phoenix", None, message.ref, "ok", {})
            return
        if message.event == "phx_join":
            await self._join(message)
            return
        channel = self.channels.get(message.topic)
        if channel is None or (message.join_ref is not None and channel.join_ref is not None
                               and message.join_ref != channel.join_ref):
            if message.event == "phx_leave":
                self.reply(message.topic, message.join_ref, message.ref, "ok", {})
            else:
                self.reply(message.topic, None, message.ref, "error", UNMATCHED)
            return
        if message.event == "phx_leave":
            self.reply(channel.topic, channel.join_ref, message.ref, "ok", {})
            self._close_channel(channel)
        elif message.event == "access_token":
            await self._access_token(channel, message)
        elif message.event == "broadcast":
            await self._broadcast(channel, message)
        elif message.event == "presence":
            await self._presence(channel, message)
        else:
            log.info("unexpected message from client",
                     extra={"topic": message.topic, "event": message.event})

    # join / leave ---------------------------------------------------------------------------

    async def _join(self, message: Message) -> None:
        topic, ref, join_ref = message.topic, message.ref, message.join_ref
        existing = self.channels.get(topic)
        if existing is not None:  # Phoenix: close the existing join, then join anew
            self._close_channel(existing)
        if not topic.startswith(TOPIC_PREFIX):
            self.reply(topic, None, ref, "error", UNMATCHED)
            return
        try:
            channel = await self._authorize_join(message)
        except ChannelRefused as refused:
            log.info("realtime join refused", extra={"topic": topic, "reason": str(refused)})
            self.reply(topic, join_ref, ref, "error", refused.reply)
            return
        self.channels[topic] = channel
        self.hub.subscribe(channel.sub_topic, channel.private, channel)
        self.reply(topic, join_ref, ref, "ok", {"postgres_changes": []})
        if channel.presence_enabled:
            self.push(channel, "presence_state",
                      self.hub.presence.state((channel.sub_topic, channel.private)))
        self._schedule_confirm(channel)

    async def _authorize_join(self, message: Message) -> Channel:
        topic = message.topic
        sub_topic = topic[len(TOPIC_PREFIX):]
        if not sub_topic:
            raise ChannelRefused(_reason("TopicNameRequired", "You must provide a topic name"))
        params = message.payload if isinstance(message.payload, dict) else {}
        config = _dict(params.get("config"))
        broadcast = _dict(config.get("broadcast"))
        presence = _dict(config.get("presence"))
        if config.get("postgres_changes"):
            raise ChannelRefused(_reason(
                "UnableToSubscribeToPostgres",
                "the local Realtime server serves Broadcast and Presence, not Postgres Changes"))
        token = params.get("access_token") or params.get("user_token")
        try:
            # off the event loop: a JWKS refetch for an unknown kid blocks
            chosen = token if isinstance(token, str) and token else self.socket_claims.token
            claims = await asyncio.to_thread(self.verifier.verify, chosen)
        except TokenRejected as exc:
            raise ChannelRefused({"reason": exc.reason}) from None
        presence_key = presence.get("key")
        channel = Channel(
            session=self,
            topic=topic,
            sub_topic=sub_topic,
            join_ref=message.join_ref if message.join_ref is not None else message.ref,
            private=bool(config.get("private")),
            self_broadcast=bool(broadcast.get("self")),
            ack_broadcast=bool(broadcast.get("ack")),
            presence_enabled=bool(presence.get("enabled")),
            presence_key=presence_key if isinstance(presence_key, str) and presence_key
            else str(uuid.uuid1()),
            claims=claims,
        )
        if channel.private:
            channel.policies = await self._read_policies(channel, claims)
        return channel

    async def _read_policies(self, channel: Channel, claims: TokenClaims) -> Policies:
        try:
            policies = await read_policies(self.pool, channel.authorization_context(claims),
                                           presence_enabled=channel.presence_enabled)
        except AuthorizationUnavailable as exc:
            log.warning("realtime authorization unavailable", extra={"error": str(exc)})
            raise ChannelRefused(DB_UNAVAILABLE) from None
        if not policies.broadcast_read:
            raise ChannelRefused(_reason("Unauthorized", _unauthorized_message(channel.sub_topic)))
        return policies

    def _close_channel(self, channel: Channel) -> None:
        """End a channel from the server side: Phoenix sends `phx_close` with the join ref."""
        if self._drop(channel):
            self.send(self.serializer.encode(Message(channel.topic, "phx_close", {},
                                                     channel.join_ref, channel.join_ref)))

    def _drop(self, channel: Channel) -> bool:
        if self.channels.get(channel.topic) is not channel:
            return False
        del self.channels[channel.topic]
        self.hub.unsubscribe(channel.sub_topic, channel.private, channel)
        if channel.confirm_task is not None and channel.confirm_task is not asyncio.current_task():
            channel.confirm_task.cancel()
        channel.confirm_task = None
        return True

    def _shutdown(self, channel: Channel, message: str) -> None:
        """Realtime's `shutdown_response`: a `system` error, then the channel closes."""
        if self.channels.get(channel.topic) is not channel:
            return
        log.info("realtime channel shut down", extra={"topic": channel.topic, "why": message})
        self.push(channel, "system", {"extension": "system", "status": "error",
                                      "message": message, "channel": channel.sub_topic})
        self._close_channel(channel)

    # token lifetime -------------------------------------------------------------------------

    def _schedule_confirm(self, channel: Channel) -> None:
        if channel.confirm_task is not None and channel.confirm_task is not asyncio.current_task():
            channel.confirm_task.cancel()
        delay = min(self.confirm_token_seconds, max(channel.claims.exp - time.time(), 0) + 0.05)
        channel.confirm_task = asyncio.get_running_loop().create_task(
            self._confirm_later(channel, delay), name="realtime-confirm-token")

    async def _confirm_later(self, channel: Channel, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.channels.get(channel.topic) is not channel:
            return
        await self._reconfirm(channel, channel.claims.token)

    async def _reconfirm(self, channel: Channel, token: str) -> None:
        """Verify `token` and re-run the probe; adopt it, or shut the channel down."""
        try:
            claims = await asyncio.to_thread(self.verifier.verify, token)
        except TokenRejected as exc:
            self._shutdown(channel, exc.message)
            return
        if channel.private:
            try:
                policies = await read_policies(self.pool, channel.authorization_context(claims),
                                               presence_enabled=channel.presence_enabled)
            except AuthorizationUnavailable:
                self._shutdown(channel, "Realtime was unable to connect to the project database")
                return
            if self.channels.get(channel.topic) is not channel:
                return
            if not policies.broadcast_read:
                self._shutdown(channel, _unauthorized_message(channel.sub_topic))
                return
            channel.policies = policies
        if self.channels.get(channel.topic) is not channel:
            return
        channel.claims = claims
        self._schedule_confirm(channel)

    async def _access_token(self, channel: Channel, message: Message) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        token = payload.get("access_token")
        if not isinstance(token, str) or not token or token == channel.claims.token:
            return
        if channel.confirm_task is not None:  # the old token must not expire mid-swap
            channel.confirm_task.cancel()
            channel.confirm_task = None
        await self._reconfirm(channel, token)

    # client sends ---------------------------------------------------------------------------

    async def _may_write(self, channel: Channel, extension: Extension) -> bool:
        if not channel.private:
            return True
        policies = channel.policies or Policies()
        if policies.can_write(extension) is None:
            try:
                policies = await write_policy(self.pool, channel.authorization_context(
                    channel.claims), extension, policies)
            except AuthorizationUnavailable as exc:
                log.warning("realtime write authorization unavailable", extra={"error": str(exc)})
                return False
            channel.policies = policies
        return bool(policies.can_write(extension))

    async def _broadcast(self, channel: Channel, message: Message) -> None:
        payload = message.payload
        if isinstance(payload, UserBroadcast):
            broadcast: Broadcast = payload
        elif isinstance(payload, dict) and isinstance(payload.get("event"), str):
            broadcast = payload
        else:
            log.info("malformed broadcast ignored", extra={"topic": channel.topic})
            return
        if await self._may_write(channel, "broadcast"):
            if self.channels.get(channel.topic) is channel:
                self.hub.publish(channel.sub_topic, channel.private, broadcast,
                                 exclude=None if channel.self_broadcast else channel)
        else:
            log.info("broadcast ignored: no write permission", extra={"topic": channel.topic})
        if channel.ack_broadcast:
            self.reply(channel.topic, channel.join_ref, message.ref, "ok", {})

    async def _presence(self, channel: Channel, message: Message) -> None:
        payload = message.payload if isinstance(message.payload, dict) else {}
        event = payload.get("event")
        key = (channel.sub_topic, channel.private)
        if event not in ("track", "untrack"):
            self.reply(channel.topic, channel.join_ref, message.ref, "error",
                       {"reason": "Unknown presence event"})
            return
        if not await self._may_write(channel, "presence"):
            self.reply(channel.topic, channel.join_ref, message.ref, "error",
                       _reason("Unauthorized", "You do not have permissions to track presence"))
            return
        if self.channels.get(channel.topic) is not channel:
            return
        if event == "track":
            meta = payload.get("payload")
            joins, leaves = self.hub.presence.track(key, channel, channel.presence_key,
                                                    meta if isinstance(meta, dict) else {})
        else:
            joins, leaves = {}, self.hub.presence.untrack(key, channel)
        if not channel.presence_enabled:  # tracking turns presence on for this channel
            channel.presence_enabled = True
        if joins or leaves:
            self.hub.push_event(channel.sub_topic, channel.private, "presence_diff",
                                {"joins": joins, "leaves": leaves})
        self.reply(channel.topic, channel.join_ref, message.ref, "ok", {})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
