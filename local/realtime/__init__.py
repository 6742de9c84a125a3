"""A local server for the Supabase Realtime protocol (Broadcast from `realtime.messages`)."""

from local.realtime.hub import RealtimeHub
from local.realtime.server import WEBSOCKET_PATH, RealtimeServer, create_app

__all__ = ["WEBSOCKET_PATH", "RealtimeHub", "RealtimeServer", "create_app"]
