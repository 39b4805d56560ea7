"""The history store interface and the message types that cross it."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..protocol import encode_message


class StoreUnavailable(Exception):
    """The store cannot take or read messages now (answered as ``unavailable``)."""


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
class Page:
    """What a read returns: messages oldest first and the topic's state at read time."""

    messages: list[StoredMessage]
    #: The topic's last offset (0 for a topic with no messages).
    offset: int
    epoch: str
    #: With ``since``: whether every message after it is in ``messages``.
    recovered: bool = True


Committed = Callable[[Sequence[StoredMessage]], None]


class HistoryStore(abc.ABC):
    """Numbers, keeps and reads the messages of every topic.

    ``append`` numbers a message at once (so calls made in one order get offsets
    in that order) and returns a future that resolves once the message is
    stored; then ``on_commit`` is called with the stored messages, in offset
    order, which is when they may be broadcast.
    """

    epoch: str
    on_commit: Committed | None = None

    def __init__(self, history_size: int) -> None:
        self.history_size = history_size

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
    ) -> Page:
        """Read a topic.

        - ``since``: every retained message with a greater offset
          (``recovered`` true), or, if retention no longer reaches back to
          ``since + 1``, the newest ``history_size`` retained (``recovered`` false);
        - ``before``: the newest ``limit`` with a smaller offset;
        - neither: the newest ``limit``.
        """

    @abc.abstractmethod
    async def topics(self) -> dict[str, int]:
        """Every topic with history, with its last offset."""
