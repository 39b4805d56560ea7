"""The broker interface: publish, subscribe, read. Backends translate into these types."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable

from ..history.base import Draft, Page, StoredMessage

Deliver = Callable[[StoredMessage], None]


class Broker(abc.ABC):
    """Numbers, stores and delivers messages.

    The hub sets ``deliver``; the broker calls it with every stored message of a
    topic the hub subscribed to, in offset order, once per message.
    """

    deliver: Deliver | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; called once when the server starts."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Finish pending work and disconnect."""

    @abc.abstractmethod
    def publish(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        """Number ``draft`` and store it; the future resolves once it is stored.

        Numbering starts before this returns, so calls made in one order get
        offsets in that order. Fails with ``StoreUnavailable``.
        """

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start delivering ``topic``; the hub calls it once, for its first local subscriber."""

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``; called when its last local subscriber left."""

    @abc.abstractmethod
    async def read(
        self,
        topic: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> Page:
        """Read a topic's history (see ``HistoryStore.read``)."""

    @abc.abstractmethod
    async def topics(self) -> dict[str, int]:
        """Every topic with history, with its last offset."""
