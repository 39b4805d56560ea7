"""The embedded broker: fan-out inside this process, history in a local store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from ..history.base import Draft, HistoryStore, StoredMessage
from ..presence import Meta, State
from .base import Broker


class LocalBroker(Broker):
    """Delivers each message once its store committed it, in offset order.

    There are no other servers: the hub's own presence is all there is.
    """

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._topics: set[str] = set()
        store.on_commit = self._committed

    async def start(self) -> None:
        await self.store.open()

    async def stop(self) -> None:
        await self.store.close()

    def publish(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        return self.store.append(draft)

    def _committed(self, messages: Sequence[StoredMessage]) -> None:
        deliver = self.deliver
        if deliver is None:
            return
        for message in messages:
            if message.topic in self._topics:
                deliver(message)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    def track(self, topic: str, username: str, meta: Meta) -> None:
        pass

    def untrack(self, topic: str, conn_id: str) -> None:
        pass

    async def remote_presence(self, topics: Iterable[str] | None = None) -> dict[str, State]:
        return {}
