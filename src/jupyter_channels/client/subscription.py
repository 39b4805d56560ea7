"""A subscription of the asyncio client: the messages, presence and state of one joined
topic. Its connection (``aio.py``) feeds it frames and (re)joins it."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..constants import Event, Subject
from ..message import Editor, Message
from ..protocol import JSON

if TYPE_CHECKING:
    from .aio import AsyncConnection

log = logging.getLogger(__name__)

Callback = Callable[[Message], Any]
F = TypeVar("F", bound=Callback)


class AsyncSubscription:
    """A joined topic: send into it, receive from it, see who is there."""

    def __init__(
        self, conn: AsyncConnection, topic: str, params: dict[str, JSON], max_messages: int
    ) -> None:
        self.conn = conn
        self.topic = topic
        self.params = params
        #: The highest offset received; a rejoin asks for everything after it.
        self.last_offset = 0
        #: Whether the last (re)join got every message since ``last_offset``.
        self.recovered = True
        self.epoch: str | None = None
        self.messages: collections.deque[Message] = collections.deque(maxlen=max_messages)
        self.joined = True
        #: ``joining``, ``joined``, ``rejoining`` (after a reconnect), ``retrying`` (the
        #: server could not answer the rejoin; tried again with backoff) or ``closed``.
        self.state = "joining"
        self.close_reason: str | None = None
        #: False on a topic this user may read but not send to (from the last join reply).
        self.can_send = True
        #: Whether the server sends this subscription presence frames (``members``).
        self.wants_presence = True
        #: Set by the first join reply; a reconnect rejoins only confirmed subscriptions
        #: (a join still waiting in the buffer is sent after the rejoin, as asked).
        self._confirmed = False
        #: Live frames held while a join's history pages are read, so delivery stays in order.
        self._held: list[dict[str, Any]] | None = None
        #: Connections closed (4008) while this topic's join was the one waiting.
        self._join_closes = 0
        self._presence: dict[str, list[dict[str, Any]]] = {}
        self._handlers: list[tuple[str, Callback]] = []
        self._queues: list[asyncio.Queue[Message | None]] = []
        #: What received messages edit and delete themselves through: this subscription,
        #: or the blocking one that wraps it.
        self.api: Editor = self

    def __repr__(self) -> str:
        return f"<AsyncSubscription {self.topic!r} {self.state} offset={self.last_offset}>"

    @property
    def members(self) -> dict[str, list[dict[str, Any]]]:
        """Who is here: username -> one meta per connection (Phoenix Presence's metas)."""
        return {user: list(metas) for user, metas in self._presence.items()}

    def on(self, subject: str, callback: F | None = None) -> Any:
        """Call ``callback(message)`` for each message with ``subject`` (``"*"``: every one).

        Usable as a decorator. An exception in a callback is logged; delivery goes on.
        """

        def register(fn: F) -> F:
            self._handlers = [*self._handlers, (subject, fn)]
            return fn

        return register if callback is None else register(callback)

    def off(self, callback: Callback) -> None:
        """Stop calling ``callback`` (every subject it was registered for)."""
        self._handlers = [(s, fn) for s, fn in self._handlers if fn is not callback]

    @overload
    async def send(
        self,
        subject: str,
        payload: JSON = None,
        *,
        ephemeral: Literal[False] = False,
        timeout: float | None = None,
    ) -> int: ...

    @overload
    async def send(
        self, subject: str, payload: JSON = None, *, ephemeral: bool, timeout: float | None = None
    ) -> int | None: ...

    async def send(
        self,
        subject: str,
        payload: JSON = None,
        *,
        ephemeral: bool = False,
        timeout: float | None = None,
    ) -> int | None:
        """Send a message into the topic; returns its offset once the server stored it.

        An ``ephemeral`` message (``typing``) goes to the topic's current subscribers
        only and is never stored: it returns ``None`` once the server sent it on.
        Raises :class:`ChannelError` on an error reply, :class:`ReplyTimeout`,
        or :class:`ConnectionLost` (then it may or may not have been stored).
        """
        frame: dict[str, JSON] = {
            "event": Event.MESSAGE.value,
            "topic": self.topic,
            "subject": subject,
            "payload": {} if payload is None else payload,
        }
        if ephemeral:
            frame["ephemeral"] = True
        response = await self.conn.request(frame, timeout)
        offset = response.get("offset")
        if ephemeral:
            return None
        return int(offset) if offset is not None else 0

    async def edit(self, offset: int, text: str, *, timeout: float | None = None) -> int:
        """Replace the text of the ``text`` message at ``offset``; returns the offset of the
        ``edit`` message. Allowed to the message's author and to the topic's moderators
        (``unauthorized`` otherwise)."""
        return await self.send(
            Subject.EDIT.value, {"offset": offset, "text": text}, timeout=timeout
        )

    async def delete(self, offset: int, *, timeout: float | None = None) -> int:
        """Delete the ``text`` message at ``offset`` (as :meth:`edit`); returns the offset of
        the ``delete`` message."""
        return await self.send(Subject.DELETE.value, {"offset": offset}, timeout=timeout)

    async def mute(self, user: str, seconds: float, *, timeout: float | None = None) -> int:
        """Refuse ``user``'s messages in this topic for ``seconds`` (0 lifts a mute); for the
        topic's moderators only. Returns the offset of the ``mute`` message."""
        return await self.send(
            Subject.MUTE.value, {"user": user, "seconds": seconds}, timeout=timeout
        )

    async def history(
        self, limit: int = 50, before: int | None = None, *, timeout: float | None = None
    ) -> list[Message]:
        """The newest ``limit`` messages with an offset below ``before``, oldest first."""
        payload: dict[str, int] = {"limit": limit}
        if before is not None:
            payload["before"] = before
        response = await self.conn.request(
            {"event": Event.HISTORY.value, "topic": self.topic, "payload": payload}, timeout
        )
        return [Message.from_frame(frame, self) for frame in response.get("messages", [])]

    async def leave(self, *, timeout: float | None = None) -> None:
        """Unsubscribe; iterators of this subscription end."""
        if not self.joined:
            return
        self.conn._forget(self)
        if self.conn.connected:
            await self.conn.request({"event": Event.LEAVE.value, "topic": self.topic}, timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        """Every message received from now on, until the subscription ends."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._queues.append(queue)
        return self._iterate(queue)

    async def _iterate(self, queue: asyncio.Queue[Message | None]) -> AsyncIterator[Message]:
        try:
            while True:
                message = await queue.get()
                if message is None:
                    return
                yield message
        finally:
            self._queues.remove(queue)

    # -- called by the connection ---------------------------------------------------------------

    def _receive(self, frame: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(frame)
        else:
            self._deliver(frame)

    def _deliver(self, frame: dict[str, Any]) -> None:
        offset = frame.get("offset")
        if isinstance(offset, int):
            if offset <= self.last_offset:
                return  # already seen (a rejoin overlaps what arrived live)
            self.last_offset = offset
        message = Message.from_frame(frame, self)
        if not message.ephemeral:
            self.messages.append(message)
        for queue in self._queues:
            queue.put_nowait(message)
        for subject, callback in self._handlers:
            if subject in ("*", message.subject):
                self._run(callback, message)

    def _run(self, callback: Callback, message: Message) -> None:
        try:
            result = callback(message)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result).add_done_callback(self._log_callback_error)
        except Exception:
            log.exception("callback %r failed on %s", callback, message)

    @staticmethod
    def _log_callback_error(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("async callback failed", exc_info=future.exception())

    def _joined(self, response: dict[str, Any]) -> None:
        self._confirmed = True
        self.state = "joined"
        self._join_closes = 0
        # A topic whose history restarted (a new store: a new epoch, or an offset behind
        # ours) numbers from 1 again: reset before delivering, or its messages look seen.
        epoch, offset = response.get("epoch"), response.get("offset")
        if (self.epoch is not None and epoch != self.epoch) or (
            isinstance(offset, int) and offset < self.last_offset
        ):
            self.last_offset = 0
        self.epoch = epoch
        self.recovered = bool(response.get("recovered", True))
        self.can_send = response.get("can_send") is not False
        for frame in response.get("messages", []):
            self._deliver(frame)
        # Everything up to the topic's offset at the join is history (delivered above, or
        # not asked for): a rejoin must not replay it as new.
        if isinstance(offset, int) and offset > self.last_offset:
            self.last_offset = offset

    def _presence_state(self, state: dict[str, Any]) -> None:
        self._presence = {user: list(entry.get("metas", [])) for user, entry in state.items()}

    def _presence_diff(self, diff: dict[str, Any]) -> None:
        for user, entry in diff.get("leaves", {}).items():
            gone = {meta.get("phx_ref") for meta in entry.get("metas", [])}
            left = [m for m in self._presence.get(user, []) if m.get("phx_ref") not in gone]
            if left:
                self._presence[user] = left
            else:
                self._presence.pop(user, None)
        for user, entry in diff.get("joins", {}).items():
            known = {meta.get("phx_ref") for meta in self._presence.get(user, [])}
            fresh = [m for m in entry.get("metas", []) if m.get("phx_ref") not in known]
            self._presence.setdefault(user, []).extend(fresh)

    def _ended(self, reason: str | None) -> None:
        self.joined = False
        self.state = "closed"
        self.close_reason = reason
        for queue in self._queues:
            queue.put_nowait(None)
