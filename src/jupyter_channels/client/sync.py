"""The blocking client for kernels and scripts: the asyncio client on a background thread.

Callbacks run on that thread, so they fire while the kernel's main thread is
busy running a cell. Every call waits at most its timeout (10 s by default).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, TypeVar, overload

from ..message import Message
from ..protocol import JSON
from .aio import DEFAULT_TIMEOUT, AsyncConnection, AsyncSubscription, Callback
from .errors import ChannelError, ReplyTimeout

T = TypeVar("T")
F = TypeVar("F", bound=Callback)

#: Extra time the calling thread gives the background loop beyond a request's own timeout.
_GRACE = 5.0


class Subscription:
    """A joined topic (blocking API): ``send``, ``on``, ``messages``, ``members``,
    ``history``, ``leave``."""

    def __init__(self, conn: Connection, sub: AsyncSubscription) -> None:
        self._conn = conn
        self._sub = sub
        self.topic = sub.topic
        # Messages received on it edit and delete themselves through this blocking API.
        sub.api = self

    def __repr__(self) -> str:
        return f"<Subscription {self.topic!r} offset={self._sub.last_offset}>"

    @overload
    def send(
        self,
        subject: str,
        payload: JSON = None,
        *,
        ephemeral: Literal[False] = False,
        timeout: float | None = None,
    ) -> int: ...

    @overload
    def send(
        self, subject: str, payload: JSON = None, *, ephemeral: bool, timeout: float | None = None
    ) -> int | None: ...

    def send(
        self,
        subject: str,
        payload: JSON = None,
        *,
        ephemeral: bool = False,
        timeout: float | None = None,
    ) -> int | None:
        """Send a message; returns its offset once stored. Raises ``ChannelError``.

        ``ephemeral=True`` (``typing``): sent to the current subscribers only, never
        stored; returns ``None``.
        """
        sending = self._sub.send(subject, payload, ephemeral=ephemeral, timeout=timeout)
        return self._conn._call(sending, timeout)

    def edit(self, offset: int, text: str, *, timeout: float | None = None) -> int:
        """Replace the text of the ``text`` message at ``offset`` (its author's or a
        moderator's); returns the ``edit`` message's offset. ``msg.edit(text)`` does it
        for a received message."""
        return self._conn._call(self._sub.edit(offset, text, timeout=timeout), timeout)

    def delete(self, offset: int, *, timeout: float | None = None) -> int:
        """Delete the ``text`` message at ``offset`` (as :meth:`edit`); ``msg.delete()``
        does it for a received message."""
        return self._conn._call(self._sub.delete(offset, timeout=timeout), timeout)

    def mute(self, user: str, seconds: float, *, timeout: float | None = None) -> int:
        """Refuse ``user``'s messages in this topic for ``seconds`` (0 lifts it); for the
        topic's moderators only."""
        return self._conn._call(self._sub.mute(user, seconds, timeout=timeout), timeout)

    def on(self, subject: str, callback: F | None = None) -> Any:
        """Call ``callback(message)`` for each message with ``subject`` (``"*"``: every
        one), on the client's thread. Usable as a decorator."""
        return self._sub.on(subject, callback)

    @property
    def messages(self) -> list[Message]:
        """The most recent messages received (at most 1000), oldest first."""
        return self._conn._call(self._snapshot(lambda: list(self._sub.messages)), None)

    @property
    def members(self) -> dict[str, list[dict[str, Any]]]:
        """Who is here: username -> one meta per connection."""
        return self._conn._call(self._snapshot(lambda: self._sub.members), None)

    @property
    def last_offset(self) -> int:
        return self._sub.last_offset

    @property
    def joined(self) -> bool:
        return self._sub.joined

    @property
    def state(self) -> str:
        """``joined``; ``rejoining`` after a reconnect; ``retrying`` while the server cannot
        answer the rejoin (tried again with backoff); ``closed`` once it ended."""
        return self._sub.state

    @property
    def epoch(self) -> str | None:
        """The history epoch the server reported at the last (re)join."""
        return self._sub.epoch

    @property
    def close_reason(self) -> str | None:
        """Why the subscription ended (``joined`` is false), if the server or client said."""
        return self._sub.close_reason

    @property
    def recovered(self) -> bool:
        """Whether the last (re)join got every message since the previous one."""
        return self._sub.recovered

    @staticmethod
    async def _snapshot(read: Callable[[], T]) -> T:
        return read()

    def history(
        self, limit: int = 50, before: int | None = None, *, timeout: float | None = None
    ) -> list[Message]:
        """The newest ``limit`` messages with an offset below ``before``, oldest first."""
        return self._conn._call(self._sub.history(limit, before, timeout=timeout), timeout)

    def leave(self, *, timeout: float | None = None) -> None:
        """Unsubscribe from the topic."""
        self._conn._call(self._sub.leave(timeout=timeout), timeout)


class Connection:
    """A connection (blocking API) with its own event loop on a daemon thread.

    ``url`` is the channels endpoint or a server's http(s) URL; without it the
    server is discovered. Raises ``ServerNotFound`` when there is none.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jupyter-channels", daemon=True
        )
        self._thread.start()
        try:
            self._aconn: AsyncConnection = self._call(
                self._open(url, token, timeout=timeout, **options), timeout
            )
        except BaseException:
            self._stop_loop()
            raise
        self.url = self._aconn.url

    @staticmethod
    async def _open(url: str | None, token: str | None, **options: Any) -> AsyncConnection:
        return await AsyncConnection(url, token, **options).open()

    def __repr__(self) -> str:
        return f"<Connection {self.url} {self._aconn.state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting`` or ``closed``."""
        return self._aconn.state

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "blocking jupyter_channels calls cannot run inside a callback; "
                "use the asyncio API (jupyter_channels.aconnect) there"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        wait = (self.timeout if timeout is None else timeout) + _GRACE
        try:
            return future.result(wait)
        except ChannelError:
            # Since Python 3.11 FutureTimeout is TimeoutError, which ReplyTimeout also is:
            # the coroutine's own timeout must not be mistaken for the wait's.
            raise
        except FutureTimeout:
            future.cancel()
            raise ReplyTimeout("timeout", f"no answer within {wait} s") from None

    def join(
        self,
        topic: str,
        *,
        history: int = 0,
        since: int | None = None,
        params: dict[str, JSON] | None = None,
        presence: bool = True,
        timeout: float | None = None,
    ) -> Subscription:
        """Join ``topic``; see ``AsyncConnection.join``. Raises ``JoinRejected``."""
        sub = self._call(
            self._aconn.join(
                topic,
                history=history,
                since=since,
                params=params,
                presence=presence,
                timeout=timeout,
            ),
            timeout,
        )
        return Subscription(self, sub)

    def recent(self, subject: str | None = None) -> list[Message]:
        """The recent messages of every joined topic (with ``subject``), oldest first."""

        async def collect() -> list[Message]:
            messages = [
                m
                for sub in self._aconn.subscriptions.values()
                for m in sub.messages
                if subject is None or m.subject == subject
            ]
            return sorted(messages, key=lambda m: m.ts or 0)

        return self._call(collect(), None)

    def close(self) -> None:
        """Close the connection and stop its thread."""
        if not self._loop.is_closed() and self._thread.is_alive():
            self._call(self._aconn.close(), None)
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def connect(url: str | None = None, token: str | None = None, **options: Any) -> Connection:
    """A blocking :class:`Connection`; without ``url`` the server is discovered."""
    return Connection(url, token, **options)


_default: Connection | None = None
_default_lock = threading.Lock()


def existing_default_connection() -> Connection | None:
    """The shared connection if it was made and is open, else ``None``."""
    return _default if _default is not None and _default.state != "closed" else None


def default_connection() -> Connection:
    """The connection ``join`` uses: discovered on first use, shared by the process."""
    global _default  # noqa: PLW0603 - one shared connection per process, made on demand
    with _default_lock:
        if _default is None or _default.state == "closed":
            _default = Connection()
        return _default


def join(
    topic: str,
    *,
    history: int = 0,
    since: int | None = None,
    params: dict[str, JSON] | None = None,
    timeout: float | None = None,
) -> Subscription:
    """Join ``topic`` on the discovered server (one shared connection per process)."""
    return default_connection().join(
        topic, history=history, since=since, params=params, timeout=timeout
    )
