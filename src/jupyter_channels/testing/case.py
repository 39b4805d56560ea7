"""An in-process hub serving the channels under test."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..channel import Channel, Router
from ..constants import DEFAULT_HISTORY_SIZE, Kind
from .client import ChannelClient

if TYPE_CHECKING:
    from ..hub import Limits

Channels = type[Channel] | dict[str, type[Channel]]


@dataclass
class ChannelCase:
    """An in-process hub serving ``channels``: a channel class (on every topic) or a
    ``{pattern: class}`` dict. Start clients with :meth:`connect`."""

    channels: Channels
    history_size: int = DEFAULT_HISTORY_SIZE
    #: The hub's limits (``jupyter_channels.hub.Limits``); the defaults when ``None``.
    limits: Limits | None = None

    def __post_init__(self) -> None:
        from ..brokers.local import LocalBroker
        from ..history.sqlite import SqliteHistory
        from ..hub import Hub

        specs = self.channels if isinstance(self.channels, dict) else {"*": self.channels}
        self.hub = Hub(
            Router(), LocalBroker(SqliteHistory(":memory:", self.history_size)), self.limits
        )
        for pattern, cls in specs.items():
            self.hub.router.add(pattern, cls(self.hub, pattern))
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: asyncio.Task[None] | None = None

    def connect(
        self,
        user: str = "user",
        *,
        name: str | None = None,
        kind: str = "browser",
        initials: str | None = None,
        color: str | None = None,
    ) -> ChannelClient:
        """A new connection of ``user`` (``kind`` ``"browser"`` or ``"kernel"``)."""
        from jupyter_server.auth import User

        identity = User(user, name or user, name or user, initials, None, color)
        return ChannelClient(self, identity, Kind(kind))

    async def _ensure_started(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            # Runners (anyio's, pytest-asyncio's) cancel leftover tasks before closing
            # their loop: the guard then stops the hub while the loop still runs.
            self._guard = self._loop.create_task(self._stop_when_cancelled())
        await self.hub.ensure_started()

    async def _stop_when_cancelled(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await self.hub.stop()

    async def close(self) -> None:
        """Drop every client and stop the hub."""
        if self._guard is not None and not self._guard.done():
            self._guard.cancel()
            await asyncio.wait([self._guard])

    def close_soon(self) -> None:
        """:meth:`close` from outside the event loop (a fixture's teardown)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(self.close())

    async def __aenter__(self) -> ChannelCase:
        await self._ensure_started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
