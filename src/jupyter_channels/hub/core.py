"""The hub: every connection and topic of one server, and each frame routed to its part.

The parts, one concept each: ``membership.py`` (join, leave, presence),
``messages.py`` (hooks, publish, fan-out), ``reads.py`` (history pages, the
topic list), ``permissions.py`` (who may join and send to which topics);
``base.py`` holds the state and helpers they share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from ..brokers.base import Broker
from ..channel import Router
from ..connection import Client, Identity, RateLimiter, Transport
from ..constants import PING_TEXT, CloseCode, ErrorCode, Event, Kind
from ..protocol import ProtocolError, decode, ok_reply, peek, ws_text_frame
from .base import Limits
from .membership import Membership
from .messages import Messages
from .permissions import Permissions
from .reads import Reads, SharedReads

log = logging.getLogger(__name__)

#: REST buckets kept before the full ones are dropped.
_MAX_REST_BUCKETS = 1024


class Hub(Membership, Messages, Reads):
    """Every connection and topic of one server."""

    def __init__(
        self,
        router: Router,
        broker: Broker,
        limits: Limits | None = None,
        permissions: Permissions | None = None,
    ) -> None:
        super().__init__(router, broker, limits, permissions)
        #: Join pages read once for joins asking for the same page together.
        self.shared_reads = SharedReads(broker, self.limits)
        self._heartbeat: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._ping_frame = ws_text_frame(PING_TEXT)
        #: Open connections by username (``max_connections_per_user``).
        self._per_user: Counter[str] = Counter()
        #: REST POSTs' rate limit, one bucket per username.
        self._rest_buckets: dict[str, RateLimiter] = {}
        broker.deliver = self._deliver
        broker.presence_changed = self._remote_presence
        broker.history_lost = self._history_lost

    # -- lifecycle ---------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Open the broker and start the heartbeat, once; safe to call from every request."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self.broker.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        if self._started is None:
            return
        await self._started
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        for client in list(self.clients.values()):
            client.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.broker.stop()

    async def _beat(self) -> None:
        """Every ``heartbeat_interval``: the ``ping`` text frame and a ping control
        frame to every client; close those silent for longer than ``idle_timeout``."""
        while True:
            await asyncio.sleep(self.limits.heartbeat_interval)
            now = time.monotonic()
            for client in list(self.clients.values()):
                if now - client.last_seen > self.limits.idle_timeout:
                    log.debug("closing %r: idle for %.0f s", client, now - client.last_seen)
                    client.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
                    continue
                client.send(self._ping_frame)
                client.ping()

    # -- connections -------------------------------------------------------------------------------

    def connect(
        self,
        conn_id: str,
        user: Identity,
        kind: Kind,
        transport: Transport,
        *,
        can_write: bool = True,
        client_type: type[Client] = Client,
    ) -> Client:
        """Register a new connection; past ``max_connections_per_user`` it is closed at once
        (4029) and the client told why. ``client_type`` is the edge's (a serializer's)."""
        limits = self.limits
        client = client_type(
            conn_id,
            user,
            kind,
            transport,
            max_queued_bytes=limits.max_queued_bytes,
            rate_limiter=RateLimiter(limits.rate_limit, limits.rate_burst),
            can_write=can_write,
            on_gone=self._gone,
        )
        self.clients[conn_id] = client
        username = user.username
        self._per_user[username] += 1
        if self._per_user[username] > limits.max_connections_per_user:
            log.info("refusing %r: over max_connections_per_user", client)
            client.close(
                CloseCode.TOO_MANY_CONNECTIONS,
                # A close reason holds 123 bytes: no username in it.
                f"too many connections for this user "
                f"(max_connections_per_user={limits.max_connections_per_user})",
            )
        return client

    def rest_allowed(self, username: str) -> bool:
        """Whether a REST POST of ``username`` is within ``rate_limit`` (one bucket per user,
        as a connection has one; a script cannot go around it by opening requests)."""
        bucket = self._rest_buckets.get(username)
        if bucket is None:
            if len(self._rest_buckets) >= _MAX_REST_BUCKETS:
                # Full buckets hold nothing a new one would not: drop them.
                self._rest_buckets = {u: b for u, b in self._rest_buckets.items() if not b.full()}
            limits = self.limits
            bucket = self._rest_buckets[username] = RateLimiter(
                limits.rate_limit, limits.rate_burst
            )
        return bucket.take()

    def _gone(self, client: Client) -> None:
        username = client.user.username
        self._per_user[username] -= 1
        if self._per_user[username] <= 0:
            del self._per_user[username]
        self._spawn(self._drop(client))

    # -- incoming frames ---------------------------------------------------------------------------

    async def receive(self, client: Client, text: str) -> None:
        """Handle one text frame; the handler awaits it before reading the next one."""
        client.last_seen = time.monotonic()
        allowed = client.rate_limiter.take()
        limit = self.limits.max_message_size
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            ref, topic = peek(text)
            self._fail(
                client,
                ErrorCode.TOO_LARGE,
                f"frame is over max_message_size ({limit} bytes)",
                ref,
                topic,
            )
            return
        try:
            frame = decode(text)
        except ProtocolError as e:
            if allowed:
                self._fail(client, e.code, e.detail, e.ref, e.topic)
            else:
                self._fail(client, ErrorCode.RATE_LIMITED, "rate limit exceeded", e.ref, e.topic)
            return
        if not allowed:
            self._fail(
                client, ErrorCode.RATE_LIMITED, "rate limit exceeded", frame.ref, frame.topic
            )
            return
        event = frame.event
        if event is Event.MESSAGE:
            await self._message(client, frame)
        elif event is Event.JOIN:
            await self._join(client, frame)
        elif event is Event.LEAVE:
            await self._leave(client, frame)
        elif event is Event.HISTORY:
            await self._history(client, frame)
        elif frame.ref is not None:  # heartbeat
            client.send_text(ok_reply(None, frame.ref))

    def receive_binary(self, client: Client) -> None:
        """Binary frames are not part of the protocol: an ``error`` frame, nothing closed."""
        client.last_seen = time.monotonic()
        if client.rate_limiter.take():
            self._fail(client, ErrorCode.INVALID_MESSAGE, "binary frames are not supported", None)
