"""The Python client: kernels and scripts publish and subscribe.

``join`` / ``connect`` are blocking (the connection runs on a background
thread); ``aconnect`` is the asyncio API.
"""

from .aio import AsyncConnection, AsyncSubscription, aconnect
from .discovery import resolve, websocket_url
from .errors import ChannelError, ConnectionLost, JoinRejected, ReplyTimeout, ServerNotFound
from .sync import Connection, Subscription, connect, join

__all__ = [
    "AsyncConnection",
    "AsyncSubscription",
    "ChannelError",
    "Connection",
    "ConnectionLost",
    "JoinRejected",
    "ReplyTimeout",
    "ServerNotFound",
    "Subscription",
    "aconnect",
    "connect",
    "join",
    "resolve",
    "websocket_url",
]
