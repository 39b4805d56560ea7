"""The history store interface and the message types that cross it."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..constants import DEFAULT_MAX_STORED_TOPICS, ErrorCode
from ..protocol import encode_message


class StoreUnavailable(Exception):
    """The store cannot take or read messages now (answered as ``unavailable``)."""

    #: The error code a client is answered with.
    code = ErrorCode.UNAVAILABLE


class TooManyTopics(StoreUnavailable):
    """A message to a new topic while the store holds ``max_topics`` topics."""

    code = ErrorCode.TOO_MANY_TOPICS


@dataclass(frozen=True, slots=True)
class Draft:
    """A message on its way into a topic: encoded, not yet numbered."""

    topic: str
    subject: str
    payload_json: str
    sender_json: str
    #: A connection id that must not receive it live (``broadcast_from``).
    exclude: str | None = None

    def stored(self, offset: int, ts: int) -> StoredMessage:
        frame = encode_message(
            self.topic, self.subject, self.payload_json, offset, ts, self.sender_json
        )
        return StoredMessage(self.topic, offset, ts, frame, self.exclude)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A numbered message; ``frame`` is its ``message`` frame, encoded once."""

    topic: str
    offset: int
    ts: int
    frame: str
    exclude: str | None = None


@dataclass(frozen=True, slots=True)
class Retained:
    """A message as a read returns it: its ``message`` frame as UTF-8 bytes, sent on as is."""

    offset: int
    ts: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class Page:
    """What a read returns: messages oldest first and the topic's state at read time."""

    messages: list[Retained]
    #: The topic's last offset (0 for a topic with no messages).
    offset: int
    epoch: str
    #: With ``since``: whether the page starts right after it (nothing between them was lost).
    recovered: bool = True
    #: Whether messages the read asked for were left out, by ``limit`` or ``max_bytes``.
    truncated: bool = False


Committed = Callable[[Sequence[StoredMessage]], None]


def within(messages: Iterable[Retained], max_bytes: int | None) -> tuple[list[Retained], bool]:
    """The first of ``messages`` whose frames fit in ``max_bytes`` (at least one), and
    whether one was left out. Stops at the first that does not fit: with a lazy
    iterator (a cursor) the rest are never read."""
    page: list[Retained] = []
    size = 0
    for message in messages:
        size += len(message.frame)
        if page and max_bytes is not None and size > max_bytes:
            return page, True
        page.append(message)
    return page, False


class HistoryStore(abc.ABC):
    """Numbers, keeps and reads the messages of every topic.

    ``append`` numbers a message at once (so calls made in one order get offsets
    in that order) and returns a future that resolves once the message is
    stored; then ``on_commit`` is called with the stored messages, in offset
    order, which is when they may be broadcast.
    """

    epoch: str
    on_commit: Committed | None = None
    #: Distinct topics the store takes; ``append`` to one more fails with TooManyTopics.
    max_topics: int = DEFAULT_MAX_STORED_TOPICS

    def refuse_new_topic(self) -> TooManyTopics:
        return TooManyTopics(f"the server holds max_topics ({self.max_topics}) topics")

    def __init__(self, history_size: int) -> None:
        self.history_size = history_size
        #: ``(topic, username)`` -> until when (ms since the epoch) they are muted.
        self.mutes: dict[tuple[str, str], int] = {}

    @abc.abstractmethod
    async def open(self) -> None:
        """Open (creating if needed) the store."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release the store."""

    @abc.abstractmethod
    def append(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        """Number ``draft`` now; the future resolves once it is stored.

        The future fails with :class:`StoreUnavailable` if it could not be stored.
        """

    @abc.abstractmethod
    async def read(
        self,
        topic: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
    ) -> Page:
        """Read at most ``limit`` messages of a topic, oldest first.

        - ``since``: the oldest retained messages after it (``recovered`` true), or,
          if retention no longer reaches back to ``since + 1``, the newest retained
          (``recovered`` false);
        - ``before``: the newest with a smaller offset;
        - neither: the newest.

        ``max_bytes`` bounds the sum of the frames' sizes, but a page holds at least
        one message: it keeps the oldest after ``since``, else the newest. ``truncated``
        says that messages were left out: newer ones when the last message's offset is
        below ``offset`` (read on with ``since`` = that offset), older ones otherwise
        (read on with ``before`` = the first message's offset).
        """

    @abc.abstractmethod
    async def topics(self) -> dict[str, int]:
        """Every topic with history, with its last offset."""

    async def message_at(self, topic: str, offset: int) -> Retained | None:
        """The retained message of ``topic`` at ``offset``; ``None`` if there is none (never
        was, or no longer retained). Stores override it with a direct lookup."""
        if offset < 1:
            return None
        page = await self.read(topic, since=offset - 1, limit=1)
        if page.recovered and page.messages and page.messages[0].offset == offset:
            return page.messages[0]
        return None

    # -- mutes (moderation) ------------------------------------------------------------------

    async def muted_until(self, topic: str, username: str) -> int | None:
        """Until when (ms since the epoch) ``username`` is muted in ``topic``, if a mute was
        recorded (it may have ended: compare with the time). This base keeps mutes in
        memory; stores that persist them override it and :meth:`mute`."""
        return self.mutes.get((topic, username))

    async def mute(self, topic: str, username: str, until: int | None) -> None:
        """Record that ``username`` is muted in ``topic`` until ``until`` (ms since the
        epoch); ``None`` lifts a mute. Fails with :class:`StoreUnavailable`."""
        if until is None:
            self.mutes.pop((topic, username), None)
        else:
            self.mutes[(topic, username)] = until
