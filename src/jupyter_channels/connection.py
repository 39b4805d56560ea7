"""One client connection as the hub sees it: identity, subscriptions, outbound queue, limits.

Nothing here does I/O itself: bytes leave through a :class:`Transport`, which
the Tornado handler implements over the WebSocket's stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .constants import CloseCode, Kind
from .protocol import JSON, WsFrame, dumps, ws_text_frame

log = logging.getLogger(__name__)

#: Frames smaller than this are copied together into one write; larger ones are not copied.
_COALESCE_BELOW = 16 * 1024


class TransportClosed(Exception):
    """The transport can no longer write."""


#: What a write left queued in the transport: ``(bytes, future resolved once written)``.
Pending = tuple[int, "asyncio.Future[Any]"]

#: Connections with frames queued in this loop turn, by loop: flushed in one callback.
_to_flush: dict[asyncio.AbstractEventLoop, list[Client]] = {}


def _flush_soon(client: Client) -> None:
    """Flush ``client`` once the running loop turn ends: one callback for all of them
    (a broadcast to N subscribers schedules one, not N)."""
    loop = asyncio.get_running_loop()
    batch = _to_flush.get(loop)
    if batch is None:
        batch = _to_flush[loop] = []
        loop.call_soon(_flush_all, loop)
    batch.append(client)


def _flush_all(loop: asyncio.AbstractEventLoop) -> None:
    for client in _to_flush.pop(loop, ()):
        try:
            client._flush()
        except Exception:  # one connection's failure must not leave the others unflushed
            log.exception("flushing %r failed", client)
            client.lost()


class Transport(Protocol):
    """The I/O side of a connection."""

    def write(self, chunks: list[bytes]) -> Pending | None:
        """Write frame bytes, in order: ``None`` when all of them left the process, else
        the bytes still queued and a future resolved once they have left too.

        Raises :class:`TransportClosed` if the connection is gone.
        """

    def close(self, code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code."""

    def ping(self) -> None:
        """Send a WebSocket ping control frame (browsers answer it with a pong)."""


class Identity(Protocol):
    """Jupyter's ``User`` (``jupyter_server.auth.User``), or anything shaped like it.

    ``groups`` (names) and ``admin`` (bool) are read when the identity has them
    (:func:`groups_of`, :func:`is_admin`); they are not required.
    """

    username: str
    name: str
    display_name: str
    initials: str | None
    color: str | None


def groups_of(identity: object) -> tuple[str, ...]:
    """The identity's groups; empty where its source has none (Jupyter's own users,
    the kernel identity)."""
    groups = getattr(identity, "groups", None)
    if not groups:
        return ()
    if isinstance(groups, str):
        return (groups,)
    return tuple(str(group) for group in groups)


def is_admin(identity: object) -> bool:
    """Whether the identity's source says it is an administrator (``False`` if it has no say)."""
    return getattr(identity, "admin", False) is True


class ChannelUser:
    """The identity channel hooks see as ``client.user``: the source identity's own
    attributes, plus ``groups`` (a tuple) and ``admin`` (a bool) whatever the source."""

    __slots__ = (
        "_identity",
        "admin",
        "color",
        "display_name",
        "groups",
        "initials",
        "name",
        "username",
    )

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self.username = identity.username
        self.name = identity.name
        self.display_name = identity.display_name
        self.initials = identity.initials
        self.color = identity.color
        self.groups = groups_of(identity)
        self.admin = is_admin(identity)

    def __getattr__(self, name: str) -> Any:
        # Whatever else the source carries (Jupyter's avatar_url, say) stays readable.
        if name == "_identity":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._identity, name)

    def __repr__(self) -> str:
        return f"<ChannelUser {self.username!r} groups={self.groups!r} admin={self.admin}>"


class RateLimiter:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        """Spend one token; ``False`` (and nothing spent) when the bucket is empty."""
        if self.rate <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self) -> bool:
        """Whether the bucket has refilled to its burst (a fresh one would be the same)."""
        if self.rate <= 0:
            return True
        elapsed = self._clock() - self._last
        return self._tokens + elapsed * self.rate >= self.burst


@dataclass(slots=True)
class Subscription:
    """A connection's membership of one topic."""

    client: Client
    topic: str
    params: dict[str, JSON]
    #: The highest offset sent on this subscription; frames at or below it are dropped.
    last_offset: int = 0
    #: Live messages held back while the join reply is prepared: ``(offset, frame bytes)``.
    pending: list[tuple[int, WsFrame]] | None = field(default_factory=list)
    #: Whether presence frames go to this subscription (a join's ``presence``).
    presence: bool = True


class Client:
    """A connected client, as channel hooks see it.

    ``id`` is the connection id, ``user`` the identity (``username``, ``name``,
    ``display_name``, ``initials``, ``color``, ``groups``, ``admin``), ``kind`` is
    ``"browser"`` or ``"kernel"`` and ``params`` maps each joined topic to its
    join payload.
    """

    def __init__(
        self,
        id: str,
        user: Identity,
        kind: Kind,
        transport: Transport,
        *,
        max_queued_bytes: int,
        rate_limiter: RateLimiter,
        can_write: bool = True,
        on_gone: Callable[[Client], None] | None = None,
    ) -> None:
        self.id = id
        self.user = user if isinstance(user, ChannelUser) else ChannelUser(user)
        self.kind = kind
        self.can_write = can_write
        self.subscriptions: dict[str, Subscription] = {}
        #: ``message`` frames being handled (their hooks run concurrently, offsets in order).
        self.in_flight: set[asyncio.Task[None]] = set()
        self.rate_limiter = rate_limiter
        self.max_queued_bytes = max_queued_bytes
        self.last_seen = time.monotonic()
        self.closed = False
        self._transport = transport
        self._on_gone = on_gone
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._in_flight = 0
        self._flush_scheduled = False
        self.sender_json = dumps(
            {"id": id, "user": user.username, "name": user.display_name, "kind": kind.value}
        )

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.user.username!r} {self.kind.value}>"

    @property
    def params(self) -> dict[str, dict[str, JSON]]:
        """The join payload of every joined topic."""
        return {topic: sub.params for topic, sub in self.subscriptions.items()}

    @property
    def queued_bytes(self) -> int:
        """Outbound bytes not yet handed to the operating system."""
        return self._outbox_bytes + self._in_flight

    def disconnect(self, reason: str = "disconnected by the server") -> None:
        """Close the connection (1000); ``handle_leave`` then runs for every joined topic."""
        self.close(CloseCode.NORMAL, reason)

    # -- output -------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        """Queue one text frame."""
        self.send(ws_text_frame(text))

    def send(self, frame: WsFrame) -> None:
        """Queue a WebSocket frame; small frames queued in one loop turn go out in one write.

        Past ``max_queued_bytes`` of unsent data the connection is closed with
        4008 ("slow consumer") and its queue freed, so one slow reader never
        grows the server's memory.
        """
        if self.closed:
            return
        self._outbox += frame.chunks
        self._outbox_bytes += frame.size
        if self._outbox_bytes + self._in_flight > self.max_queued_bytes:
            log.info(
                "closing %r: %d bytes queued, over max_queued_bytes=%d",
                self,
                self.queued_bytes,
                self.max_queued_bytes,
            )
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            _flush_soon(self)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox = self._outbox
        if self.closed or not outbox:
            return
        if len(outbox) == 1:  # one frame (a broadcast to an idle subscriber): as it is
            chunks = outbox
            self._outbox = []
        else:
            # Small chunks are joined into one write; large payloads go out as they are.
            chunks = []
            run: list[bytes] = []
            for chunk in outbox:
                if len(chunk) < _COALESCE_BELOW:
                    run.append(chunk)
                    continue
                if run:
                    chunks.append(run[0] if len(run) == 1 else b"".join(run))
                    run = []
                chunks.append(chunk)
            if run:
                chunks.append(run[0] if len(run) == 1 else b"".join(run))
            outbox.clear()
        self._outbox_bytes = 0
        try:
            pending = self._transport.write(chunks)
        except TransportClosed:
            log.debug("write to %r failed: connection gone", self)
            self.lost()
            return
        if pending is not None:
            size, written = pending
            if written.done():
                self._written(written, 0)
            else:
                self._in_flight += size
                written.add_done_callback(lambda fut: self._written(fut, size))

    def _written(self, fut: asyncio.Future[Any], size: int) -> None:
        self._in_flight -= size
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("write to %r failed: %s", self, fut.exception())
            self.lost()

    def close(self, code: int, reason: str) -> None:
        """Close with ``code``, drop the queue and tell the hub (once)."""
        if self.closed:
            return
        self._outbox.clear()
        self._outbox_bytes = 0
        self._transport.close(code, reason)
        self.lost()

    def lost(self) -> None:
        """The connection is gone (closed by either side, or a write failed)."""
        if self.closed:
            return
        self.closed = True
        self._outbox.clear()
        self._outbox_bytes = 0
        if self._on_gone is not None:
            self._on_gone(self)

    def ping(self) -> None:
        self._transport.ping()
