"""Realtime topic channels for Jupyter.

Server side: subclass :class:`Channel` (raise :class:`Reject` to refuse a join)
and register it with ``c.ChannelsApp.channels``.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .channel import Channel, Message, RebroadcastChannel, Reject

__all__ = ["Channel", "Message", "RebroadcastChannel", "Reject", "__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import ChannelsApp

    return [{"module": "jupyter_channels", "app": ChannelsApp}]
