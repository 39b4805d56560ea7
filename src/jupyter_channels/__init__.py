"""Realtime topic channels for Jupyter.

Server side: subclass :class:`Channel` (raise :class:`Reject` to refuse a
join) and register it with ``c.ChannelsApp.channels``. Kernels and scripts:
``join`` / ``connect`` (blocking) and ``aconnect`` (asyncio). Notebooks:
``ChannelWidget``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .channel import Channel, RebroadcastChannel, Reject
from .client import (
    AsyncConnection,
    AsyncSubscription,
    ChannelError,
    Connection,
    ConnectionLost,
    JoinRejected,
    ReplyTimeout,
    ServerNotFound,
    Subscription,
    aconnect,
    connect,
    join,
)
from .message import Message

if TYPE_CHECKING:
    from .widget import ChannelWidget as ChannelWidget

__all__ = [
    "AsyncConnection",
    "AsyncSubscription",
    "Channel",
    "ChannelError",
    "Connection",
    "ConnectionLost",
    "JoinRejected",
    "Message",
    "RebroadcastChannel",
    "Reject",
    "ReplyTimeout",
    "ServerNotFound",
    "Subscription",
    "__version__",
    "aconnect",
    "connect",
    "join",
]


def __getattr__(name: str) -> Any:
    # ChannelWidget is imported on first use: anywidget brings ipywidgets and IPython
    # (about 180 modules, a third of a second), which the server extension, the CLI and
    # scripts never use.
    if name == "ChannelWidget":
        from .widget import ChannelWidget

        return ChannelWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import ChannelsApp

    return [{"module": "jupyter_channels", "app": ChannelsApp}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_channels``: the ``%%share``, ``%share`` and ``%channels`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
