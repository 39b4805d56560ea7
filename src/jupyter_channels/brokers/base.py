"""The broker interface: publish, subscribe, read, and presence across servers.

Backends translate into these types (``StoredMessage``, presence ``State``).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Iterable

from ..history.base import Draft, HistoryStore, Page, Retained, StoredMessage
from ..presence import Meta, State

Deliver = Callable[[StoredMessage], None]
#: ``(topic, frame, exclude)``: an ephemeral ``message`` frame (never stored) for a topic's
#: subscribers here, but not the connection ``exclude``.
DeliverEphemeral = Callable[[str, str, str | None], None]
#: ``(topic, joins, leaves)``: other servers' members came or went.
PresenceChanged = Callable[[str, State, State], None]
#: ``(topic)``: the topic's history is gone and its offsets start again.
HistoryLost = Callable[[str], None]


class Broker(abc.ABC):
    """Numbers, stores and delivers messages; shares presence with other servers.

    The hub sets the callbacks. The broker calls ``deliver`` with every stored
    message of a topic the hub subscribed to, in offset order, once per message;
    ``presence_changed`` when members on other servers join or leave a
    subscribed topic; ``history_lost`` when a subscribed topic's history was lost
    (its subscribers' offsets mean nothing any more). A broker without other
    servers (the local one) never calls the last two and has no remote presence.
    ``deliver_ephemeral`` gets the ephemeral frames of subscribed topics, in no
    particular order with the stored ones.
    """

    deliver: Deliver | None = None
    deliver_ephemeral: DeliverEphemeral | None = None
    presence_changed: PresenceChanged | None = None
    history_lost: HistoryLost | None = None
    #: Where the broker keeps history; ``read`` and ``topics`` ask it.
    store: HistoryStore

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

    def publish_ephemeral(
        self, topic: str, frame: str, exclude: str | None = None
    ) -> asyncio.Future[None]:
        """Send an ephemeral ``message`` frame to the topic's subscribers on every server,
        without numbering or storing it; the future resolves once it is on its way.

        This server's subscribers get it at once (all of them, for a broker without
        other servers). Fails with ``StoreUnavailable`` when the other servers cannot be
        reached.
        """
        if self.deliver_ephemeral is not None:
            self.deliver_ephemeral(topic, frame, exclude)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Start delivering ``topic``; the hub calls it once, for its first local subscriber."""

    @abc.abstractmethod
    async def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``; called when its last local subscriber left."""

    async def read(
        self,
        topic: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
    ) -> Page:
        """Read a topic's history (see ``HistoryStore.read``)."""
        return await self.store.read(
            topic, since=since, before=before, limit=limit, max_bytes=max_bytes
        )

    async def topics(self) -> dict[str, int]:
        """Every topic with history, with its last offset."""
        return await self.store.topics()

    async def message_at(self, topic: str, offset: int) -> Retained | None:
        """The retained message at ``offset`` (see ``HistoryStore.message_at``)."""
        return await self.store.message_at(topic, offset)

    async def muted_until(self, topic: str, username: str) -> int | None:
        """Until when ``username`` is muted in ``topic`` (see ``HistoryStore.muted_until``):
        kept by the store, so every server sharing it sees the same mutes."""
        return await self.store.muted_until(topic, username)

    async def mute(self, topic: str, username: str, until: int | None) -> None:
        """Record a mute (``None``: lift it), in the store."""
        await self.store.mute(topic, username, until)

    # -- presence across servers ----------------------------------------------------------------

    @abc.abstractmethod
    def track(self, topic: str, username: str, meta: Meta) -> None:
        """A connection of this server joined ``topic``: tell the other servers.

        Not awaited: changes are sent in call order, in the background, and kept
        alive by the broker (the other servers forget them if this one dies).
        """

    @abc.abstractmethod
    def untrack(self, topic: str, conn_id: str) -> None:
        """The connection ``conn_id`` of this server left ``topic`` (as ``track``)."""

    @abc.abstractmethod
    async def remote_presence(self, topics: Iterable[str] | None = None) -> dict[str, State]:
        """Other servers' members, by topic: of ``topics``, or of every topic that has any.

        For topics the hub did not subscribe to (``presence_changed`` keeps it up
        to date on the others). Fails with ``StoreUnavailable``.
        """
