"""The Redis broker: several Jupyter servers share topics, offsets, history and presence.

- Messages are numbered, stored and published by one Lua script
  (``history/redis.py``); each server subscribes once per topic (the hub
  counts local subscribers) to the topic's pub/sub channel and delivers what
  arrives, in offset order.
- Ephemeral messages are published on the topic's channel alone (``e``), never
  stored; the publishing server delivers them to its own subscribers at once.
- Presence: each server writes its members into one hash per topic and
  publishes every join and leave on the topic's channel. Every third of
  ``presence_ttl`` it writes them all again and renews its entry in a sorted
  set of servers; a server that stops renewing (it died) is removed, with its
  members, by the next server that looks, which publishes their leaves.
- Faults: losing Redis never raises out of the broker. The subscriber connection
  reconnects with backoff and jitter, subscribes again and reads what it missed
  from history (or, if that is gone, tells the hub with ``history_lost``).
  Meanwhile publishing fails with ``StoreUnavailable``. One warning per outage.

Translates Redis replies into the library's types; nothing Redis-shaped leaves
this file (and ``history/redis.py``). Needs the ``redis`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ..constants import MAX_HISTORY_LIMIT
from ..history.base import Draft, StoredMessage, StoreUnavailable
from ..history.redis import (
    CONNECT_TIMEOUT,
    DEFAULT_PREFIX,
    NO_EXCLUDE,
    SOCKET_TIMEOUT,
    RedisHistory,
    aclose,
    sha,
    text,
)
from ..presence import Meta, State
from ..protocol import dumps
from .base import Broker

log = logging.getLogger(__name__)

#: Reconnection delays of the subscriber connection, in seconds (doubling, with jitter).
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
#: Seconds to wait for Redis to confirm a subscription.
SUBSCRIBE_TIMEOUT = 10.0
#: Seconds the subscriber connection waits for a message before it looks at its state.
POLL_INTERVAL = 1.0
#: A publish waits at most this long for its message to arrive here before its ok.
DELIVERY_WAIT = 5.0

# KEYS: presence hash, present set, server's topic set, servers zset.
# ARGV: server id, topic, connection id, member, channel, ttl ms.
TRACK_LUA = """
local field = ARGV[1] .. ':' .. ARGV[3]
redis.call('HSET', KEYS[1], field, ARGV[4])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[4], 'NX', string.format('%d', ms + tonumber(ARGV[6])), ARGV[1])
redis.call('PUBLISH', ARGV[5], 'j ' .. field .. ' ' .. ARGV[4])
return 1
"""

# KEYS: presence hash, present set. ARGV: server id, topic, connection id, channel.
UNTRACK_LUA = """
local field = ARGV[1] .. ':' .. ARGV[3]
local member = redis.call('HGET', KEYS[1], field)
if not member then return 0 end
redis.call('HDEL', KEYS[1], field)
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
redis.call('PUBLISH', ARGV[4], 'l ' .. field .. ' ' .. member)
return 1
"""

# Every presence_ttl / 3 from each server (and with ttl 0 when it stops). It touches keys
# it finds inside Redis, so it needs a single Redis (not a cluster).
# ARGV: prefix, server id, ttl ms (0: this server leaves), n, then n x (topic, conn, member).
# Returns how many dead servers it removed.
SYNC_LUA = """
local p, sid, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local function drop(topic, field)
  local key = p .. 'presence:' .. topic
  local member = redis.call('HGET', key, field)
  if not member then return end
  redis.call('HDEL', key, field)
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', p .. 'present', topic) end
  redis.call('PUBLISH', p .. 'live:' .. topic, 'l ' .. field .. ' ' .. member)
end
local function drop_server(server, keep)
  local topics = p .. 'server:' .. server
  local mine = server .. ':'
  for _, topic in ipairs(redis.call('SMEMBERS', topics)) do
    for _, field in ipairs(redis.call('HKEYS', p .. 'presence:' .. topic)) do
      if string.sub(field, 1, #mine) == mine and not keep[topic .. ' ' .. field] then
        drop(topic, field)
      end
    end
  end
  redis.call('DEL', topics)
end
-- This server's members as they are now: drop what is gone, add what is missing.
local keep = {}
for i = 0, n - 1 do
  keep[ARGV[5 + 3 * i] .. ' ' .. sid .. ':' .. ARGV[6 + 3 * i]] = true
end
drop_server(sid, keep)
for i = 0, n - 1 do
  local topic, field, member = ARGV[5 + 3 * i], sid .. ':' .. ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  if redis.call('HSET', p .. 'presence:' .. topic, field, member) == 1 then
    redis.call('PUBLISH', p .. 'live:' .. topic, 'j ' .. field .. ' ' .. member)
  end
  redis.call('SADD', p .. 'present', topic)
  redis.call('SADD', p .. 'server:' .. sid, topic)
end
if ttl > 0 then
  redis.call('ZADD', p .. 'servers', string.format('%d', ms + ttl), sid)
else
  redis.call('ZREM', p .. 'servers', sid)
end
-- Servers that stopped renewing are gone: their members leave.
local reaped = 0
local dead = redis.call('ZRANGEBYSCORE', p .. 'servers', '-inf', string.format('(%d', ms))
for _, server in ipairs(dead) do
  if server ~= sid then
    drop_server(server, {})
    redis.call('ZREM', p .. 'servers', server)
    reaped = reaped + 1
  end
end
return reaped
"""

_TRACK_SHA = sha(TRACK_LUA)
_UNTRACK_SHA = sha(UNTRACK_LUA)

#: A presence change read from the topic's channel: (connection id, b"j" | b"l", member).
_Event = tuple[str, bytes, bytes]
_Member = tuple[str, Meta]


@dataclass
class _Subscribed:
    """What the broker knows of one topic the hub subscribed to."""

    #: The last offset delivered to the hub (None until known).
    last: int | None = None
    #: Live messages held back while what was missed is read from history.
    held: list[StoredMessage] | None = None
    #: Other servers' members: connection id -> (username, meta).
    remote: dict[str, _Member] = field(default_factory=dict)
    #: Presence changes held back while a snapshot of the members is read.
    presence_held: list[_Event] | None = None
    #: Publishes of this server whose ok waits until their message was delivered here.
    waiters: deque[tuple[StoredMessage, asyncio.Future[StoredMessage]]] = field(
        default_factory=deque
    )


class _Reconnect(Exception):
    """Raised inside the subscriber loop to start over on a new connection."""


def _member(value: bytes) -> _Member:
    member = json.loads(value)
    return member["u"], member["m"]


def _state(members: Iterable[_Member]) -> State:
    state: State = {}
    for username, meta in members:
        state.setdefault(username, {"metas": []})["metas"].append(meta)
    return state


def _unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"Redis is unavailable: {error}")


class RedisBroker(Broker):
    """Topics shared by every server on one Redis database (see the module docstring)."""

    def __init__(
        self,
        url: str,
        history_size: int,
        *,
        presence_ttl: float = 30.0,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.store: RedisHistory = RedisHistory(url, history_size, prefix=prefix)
        self.keys = self.store.keys
        self.health = self.store.health
        self.server_id = uuid.uuid4().hex[:12]
        self.presence_ttl = presence_ttl
        self._subscribed: dict[str, _Subscribed] = {}
        #: This server's members: topic -> connection id -> encoded member.
        self._local: dict[str, dict[str, str]] = {}
        self._presence_ops: list[tuple[str, str, str | None]] = []
        self._presence_flusher: asyncio.Task[None] | None = None
        #: Held while presence is written. Commands go over pooled connections, so Redis
        #: could run a renewal listing members from before a join after that join, and
        #: drop the new member until the next renewal; one writer at a time keeps order.
        self._presence_writing = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._reconnect = False
        self._confirm: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        #: Set when a command got through while the subscriber connection was down.
        self._back = asyncio.Event()
        self.health.on_back = self._back.set
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<RedisBroker {self.health.url} server={self.server_id}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect; if Redis is not there (yet), keep trying in the background."""
        self.store.on_epoch = self._epoch_changed
        await self.store.open()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever())
        self._renewer = loop.create_task(self._renew_forever())
        if self.health.down_since is None:
            # Redis answered: have the subscriber connection up before the first join.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._connected.wait(), CONNECT_TIMEOUT)

    async def stop(self) -> None:
        self._stopping.set()
        if self._presence_flusher is not None:
            await asyncio.shield(self._presence_flusher)
        tasks = [task for task in (self._renewer, self._reader, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py may finish a command it was cancelled in; the loops also end on
            # their next turn, since _stopping is set.
            await asyncio.wait(tasks, timeout=SOCKET_TIMEOUT)
        # Leave at once rather than when this server's presence expires.
        with contextlib.suppress(StoreUnavailable):
            await self._sync(leaving=True)
        await self._close_pubsub()
        for sub in self._subscribed.values():
            self._acknowledge_all(sub)
        await self.store.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- publishing and reading --------------------------------------------------------------------

    def publish(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        stored = self.store.append(draft)
        if draft.topic not in self._subscribed:
            return stored
        # Subscribers here get the message before its sender's ok, as with the local broker.
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[StoredMessage] = loop.create_future()

        def done(future: asyncio.Future[StoredMessage]) -> None:
            if future.cancelled():
                acked.cancel()
                return
            error = future.exception()
            if error is not None:
                acked.set_exception(error)
                return
            message = future.result()
            sub = self._subscribed.get(message.topic)
            if sub is None or self._pubsub is None or (sub.last or 0) >= message.offset:
                acked.set_result(message)
                return
            sub.waiters.append((message, acked))
            # Stored is what the ok promises; never hold it back for long.
            timer = loop.call_later(DELIVERY_WAIT, _resolve, acked, message)
            acked.add_done_callback(lambda _: timer.cancel())

        stored.add_done_callback(done)
        return acked

    def publish_ephemeral(
        self, topic: str, frame: str, exclude: str | None = None
    ) -> asyncio.Future[None]:
        """Deliver here at once, and publish on the topic's channel for the other servers
        (tagged with this server's id, so it is not delivered here twice)."""
        super().publish_ephemeral(topic, frame, exclude)
        data = f"e {self.server_id} {exclude or NO_EXCLUDE} {frame}".encode()
        return asyncio.ensure_future(self._publish(self.keys.live(topic), data))

    async def _publish(self, channel: str, data: bytes) -> None:
        try:
            await self.store.client().publish(channel, data)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise _unavailable(e) from e

    # -- subscriptions -----------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        sub = self._subscribed[topic] = _Subscribed()
        await self._subscribe_channels([topic])
        # Messages stored before the subscription are the hub's to read from history.
        page = await self.store.read(topic, limit=0)
        sub.last = max(sub.last or 0, page.offset)
        self._acknowledge(sub)
        await self._snapshot_presence([topic])

    async def unsubscribe(self, topic: str) -> None:
        sub = self._subscribed.pop(topic, None)
        if sub is not None:
            self._acknowledge_all(sub)
        pubsub = self._pubsub
        if pubsub is not None and topic not in self._subscribed:
            try:
                await pubsub.unsubscribe(self.keys.live(topic))
            except (RedisError, OSError) as e:
                # A reconnect subscribes only to the topics still wanted.
                log.debug("unsubscribing from %r failed: %s", topic, e)

    async def _subscribe_channels(self, topics: list[str]) -> None:
        """Subscribe and wait until Redis confirms: from then on nothing published is missed."""
        pubsub = self._pubsub
        if pubsub is None:
            raise StoreUnavailable("Redis is unavailable: not connected")
        loop = asyncio.get_running_loop()
        channels = [self.keys.live(topic).encode() for topic in topics]
        waits: list[asyncio.Future[None]] = []
        for channel in channels:
            waits.append(loop.create_future())
            self._confirm.setdefault(channel, deque()).append(waits[-1])
        try:
            await pubsub.subscribe(*channels)
            await asyncio.wait_for(asyncio.gather(*waits), SUBSCRIBE_TIMEOUT)
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            self.health.failed(e)
            raise _unavailable(e) from e
        finally:
            for channel, wait in zip(channels, waits, strict=True):
                pending = self._confirm.get(channel)
                if pending is not None and wait in pending:
                    pending.remove(wait)
                if not pending:
                    self._confirm.pop(channel, None)

    # -- the subscriber connection -----------------------------------------------------------------

    async def _pause(self, seconds: float, *events: asyncio.Event) -> None:
        """Sleep, waking early when the broker stops or one of ``events`` is set."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, *events)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _read_forever(self) -> None:
        """Connect, subscribe and deliver; after any failure, the same again with backoff."""
        delay = BACKOFF_MIN
        while not self._stopping.is_set():
            self._back.clear()
            try:
                pubsub = self.store.client().pubsub()
                self._pubsub = pubsub
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._connected.set()
                self.health.ok()
                delay = BACKOFF_MIN
                if self._subscribed:
                    self._spawn(self._resubscribe())
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except _Reconnect:
                pass
            except (RedisError, OSError, StoreUnavailable) as e:
                self.health.failed(e)
            except Exception:
                log.exception("Redis broker: the subscriber connection failed")
            await self._disconnected()
            # Back off, but not past the moment another connection found Redis again.
            await self._pause(delay * random.uniform(0.5, 1.5), self._back)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self, pubsub: PubSub) -> None:
        while not self._stopping.is_set():
            if self._reconnect:
                self._reconnect = False
                raise _Reconnect
            message = await pubsub.get_message(timeout=POLL_INTERVAL)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                self._received(channel.decode()[len(self.keys.live_prefix) :], message["data"])
            elif kind == "subscribe":
                pending = self._confirm.get(channel)
                if pending:
                    wait = pending.popleft()
                    if not wait.done():
                        wait.set_result(None)

    async def _disconnected(self) -> None:
        self._connected.clear()
        for pending in self._confirm.values():
            for wait in pending:
                if not wait.done():
                    wait.set_exception(StoreUnavailable("Redis is unavailable"))
        self._confirm.clear()
        for sub in self._subscribed.values():
            # What arrives after the reconnect waits until the gap was read from history.
            if sub.held is None:
                sub.held = []
            self._acknowledge_all(sub)
        await self._close_pubsub()
        # Idle pooled connections probably died with this one: none should fail the next
        # command. Those in use are left alone: they fail by themselves if they are dead.
        redis = self.store.redis
        if redis is not None:
            await redis.connection_pool.disconnect(inuse_connections=False)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await aclose(pubsub)

    async def _resubscribe(self) -> None:
        """After a reconnect: subscribe again, then deliver what was missed meanwhile."""
        try:
            await self._subscribe_channels(list(self._subscribed))
            for topic in list(self._subscribed):
                await self._catch_up(topic)
            await self._sync()
            await self._snapshot_presence(list(self._subscribed))
        except StoreUnavailable as e:
            log.debug("resubscribing failed (%s); reconnecting", e)
            self._reconnect = True

    async def _catch_up(self, topic: str) -> None:
        """Deliver the messages after ``last`` from history, then those held meanwhile."""
        sub = self._subscribed.get(topic)
        if sub is None or sub.held is None:
            return
        while True:
            since = sub.last
            limit = 0 if since is None else MAX_HISTORY_LIMIT
            page = await self.store.read(topic, since=since, limit=limit)
            if self._subscribed.get(topic) is not sub or sub.held is None:
                return
            if since is None or sub.last is None:
                # Nothing delivered yet, or a new epoch (the hub was told): start from here.
                sub.last = page.offset
            elif page.recovered:
                for retained in page.messages:
                    frame = retained.frame.decode()
                    self._advance(sub, StoredMessage(topic, retained.offset, retained.ts, frame))
                if page.truncated:
                    continue
            else:
                # Trimmed meanwhile: the subscribers here cannot get every message after
                # the last they saw. They have to rejoin.
                sub.last = page.offset
                self._lost(topic)
            break
        held, sub.held = sub.held, None
        for message in held:
            self._live(topic, sub, message)
        self._acknowledge(sub)

    def _received(self, topic: str, data: bytes) -> None:
        """One pub/sub message: a stored message, an ephemeral one, or a member of another
        server came or went."""
        sub = self._subscribed.get(topic)
        if sub is None:
            return
        kind = data[:1]
        if kind == b"e":
            # Ephemeral: never numbered, so nothing to hold back or catch up on.
            _, origin, skip, body = data.split(b" ", 3)
            if origin.decode() != self.server_id and self.deliver_ephemeral is not None:
                excluded = None if skip == NO_EXCLUDE.encode() else skip.decode()
                self.deliver_ephemeral(topic, body.decode(), excluded)
        elif kind == b"m":
            _, offset, ts, exclude, frame = data.split(b" ", 4)
            message = StoredMessage(
                topic,
                int(offset),
                int(ts),
                frame.decode(),
                None if exclude == NO_EXCLUDE.encode() else exclude.decode(),
            )
            if sub.held is not None:
                sub.held.append(message)
            else:
                self._live(topic, sub, message)
        elif kind in (b"j", b"l"):
            _, member_field, value = data.split(b" ", 2)
            server, _, conn_id = member_field.decode().partition(":")
            if server == self.server_id:
                return
            if sub.presence_held is not None:
                sub.presence_held.append((conn_id, kind, value))
            else:
                before = dict(sub.remote)
                self._apply_presence(sub, [(conn_id, kind, value)])
                self._presence_diff(topic, before, sub.remote)

    def _live(self, topic: str, sub: _Subscribed, message: StoredMessage) -> None:
        last = sub.last
        if last is not None and message.offset <= last:
            if message.offset < last:
                # Seen already (it raced the start of the subscription), or Redis lost
                # its data and numbers from 1 again: the epoch tells.
                self._spawn(self._check_epoch())
            return
        if last is not None and message.offset > last + 1:
            # One healthy connection never skips a message, but history has it.
            sub.held = [message]
            self._spawn(self._catch_up_or_reconnect(topic))
            return
        self._advance(sub, message)

    async def _catch_up_or_reconnect(self, topic: str) -> None:
        try:
            await self._catch_up(topic)
        except StoreUnavailable:
            self._reconnect = True

    def _advance(self, sub: _Subscribed, message: StoredMessage) -> None:
        if sub.last is not None and message.offset <= sub.last:
            return
        sub.last = message.offset
        if self.deliver is not None:
            self.deliver(message)
        self._acknowledge(sub)

    @staticmethod
    def _acknowledge(sub: _Subscribed) -> None:
        """Resolve the publishes whose message was delivered here."""
        last = sub.last or 0
        while sub.waiters and sub.waiters[0][0].offset <= last:
            message, acked = sub.waiters.popleft()
            _resolve(acked, message)

    @staticmethod
    def _acknowledge_all(sub: _Subscribed) -> None:
        """Resolve every waiting publish: stored is what the ok promises."""
        while sub.waiters:
            message, acked = sub.waiters.popleft()
            _resolve(acked, message)

    # -- lost history ------------------------------------------------------------------------------

    async def _check_epoch(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.store.read("", limit=0)  # a new epoch calls _epoch_changed

    def _epoch_changed(self, epoch: str) -> None:
        """Redis lost its data: offsets start again, so every subscriber here must rejoin."""
        for topic, sub in list(self._subscribed.items()):
            sub.last = None
            if sub.held is None:
                sub.held = []
                self._spawn(self._catch_up_or_reconnect(topic))
            self._lost(topic)

    def _lost(self, topic: str) -> None:
        sub = self._subscribed.get(topic)
        if sub is not None:
            self._acknowledge_all(sub)
        if self.history_lost is not None:
            self.history_lost(topic)

    # -- presence ----------------------------------------------------------------------------------

    def track(self, topic: str, username: str, meta: Meta) -> None:
        conn_id = str(meta["phx_ref"])
        member = dumps({"u": username, "m": meta})
        self._local.setdefault(topic, {})[conn_id] = member
        self._presence_op((topic, conn_id, member))

    def untrack(self, topic: str, conn_id: str) -> None:
        members = self._local.get(topic)
        if members is None or members.pop(conn_id, None) is None:
            return
        if not members:
            del self._local[topic]
        self._presence_op((topic, conn_id, None))

    def _presence_op(self, op: tuple[str, str, str | None]) -> None:
        self._presence_ops.append(op)
        if self._presence_flusher is None:
            self._presence_flusher = asyncio.get_running_loop().create_task(self._flush_presence())

    async def _flush_presence(self) -> None:
        """Send joins and leaves in call order, a pipeline per batch."""
        try:
            while self._presence_ops:
                ops, self._presence_ops = self._presence_ops, []
                try:
                    async with self._presence_writing:
                        await self._send_presence(ops)
                except (RedisError, OSError, StoreUnavailable) as e:
                    # The next renewal writes this server's members as they are by then.
                    self.health.failed(e)
        finally:
            self._presence_flusher = None

    async def _send_presence(self, ops: list[tuple[str, str, str | None]]) -> None:
        keys, server_id = self.keys, self.server_id
        pipe = self.store.client().pipeline(transaction=False)
        pipe.script_load(TRACK_LUA)
        pipe.script_load(UNTRACK_LUA)
        for topic, conn_id, member in ops:
            presence, live = keys.presence(topic), keys.live(topic)
            if member is not None:
                pipe.evalsha(
                    _TRACK_SHA, 4, presence, keys.present, keys.server(server_id), keys.servers,
                    server_id, topic, conn_id, member, live, self._ttl_ms,
                )  # fmt: skip
            else:
                pipe.evalsha(
                    _UNTRACK_SHA, 2, presence, keys.present, server_id, topic, conn_id, live
                )
        await pipe.execute()

    async def _renew_forever(self) -> None:
        """Every third of ``presence_ttl``: write this server's members again (renewing
        it), remove stopped servers, and compare subscribed topics' members with Redis."""
        while not self._stopping.is_set():
            try:
                reaped = await self._sync()
                if reaped:
                    log.info("Redis broker: removed the members of %d stopped server(s)", reaped)
                await self._snapshot_presence(list(self._subscribed))
            except StoreUnavailable as e:
                log.debug("renewing presence failed: %s", e)
            except Exception:
                log.exception("Redis broker: renewing presence failed")
            await self._pause(self.presence_ttl / 3)

    async def _sync(self, *, leaving: bool = False) -> int:
        async with self._presence_writing:
            # Listed once the lock is held: joins and leaves not yet written are in it,
            # and those made while it is written are sent after it.
            triples: list[str] = []
            if not leaving:
                for topic, members in self._local.items():
                    for conn_id, member in members.items():
                        triples += [topic, conn_id, member]
            ttl = 0 if leaving else self._ttl_ms
            args = [self.keys.prefix, self.server_id, ttl, len(triples) // 3]
            return int(await self.store.eval(SYNC_LUA, [], [*args, *triples]))

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.presence_ttl * 1000))

    async def _snapshot_presence(self, topics: list[str]) -> None:
        """Read the members of ``topics`` and tell the hub how they differ from what it has.

        Changes that arrive while the snapshot is read may be older or newer than it;
        applied after it, in order, they leave the members as the last change says.
        """
        subs = {
            topic: sub
            for topic in topics
            if (sub := self._subscribed.get(topic)) is not None and sub.presence_held is None
        }
        if not subs:
            return
        for sub in subs.values():
            sub.presence_held = []
        snapshot: dict[str, dict[str, _Member]] | None = None
        try:
            snapshot = await self._read_presence(list(subs))
        finally:
            for topic, sub in subs.items():
                held, sub.presence_held = sub.presence_held or [], None
                if self._subscribed.get(topic) is not sub:
                    continue
                before = dict(sub.remote)
                if snapshot is not None:
                    sub.remote = dict(snapshot.get(topic, {}))
                self._apply_presence(sub, held)
                self._presence_diff(topic, before, sub.remote)

    async def _read_presence(self, topics: list[str]) -> dict[str, dict[str, _Member]]:
        """Other servers' members of ``topics``: topic -> connection id -> member."""
        if not topics:
            return {}
        try:
            pipe = self.store.client().pipeline(transaction=False)
            for topic in topics:
                pipe.hgetall(self.keys.presence(topic))
            results = await pipe.execute()
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise _unavailable(e) from e
        mine = self.server_id + ":"
        out: dict[str, dict[str, _Member]] = {}
        for topic, fields in zip(topics, results, strict=True):
            members = out[topic] = {}
            for member_field, value in fields.items():
                name = member_field.decode()
                if not name.startswith(mine):
                    members[name.partition(":")[2]] = _member(value)
        return out

    @staticmethod
    def _apply_presence(sub: _Subscribed, events: list[_Event]) -> None:
        for conn_id, kind, value in events:
            if kind == b"j":
                sub.remote[conn_id] = _member(value)
            else:
                sub.remote.pop(conn_id, None)

    def _presence_diff(
        self, topic: str, before: dict[str, _Member], after: dict[str, _Member]
    ) -> None:
        joins = [member for conn, member in after.items() if before.get(conn) != member]
        leaves = [member for conn, member in before.items() if after.get(conn) != member]
        if (joins or leaves) and self.presence_changed is not None:
            self.presence_changed(topic, _state(joins), _state(leaves))

    async def remote_presence(self, topics: Iterable[str] | None = None) -> dict[str, State]:
        if topics is None:
            try:
                present = await self.store.client().smembers(self.keys.present)
            except (RedisError, OSError) as e:
                self.health.failed(e)
                raise _unavailable(e) from e
            wanted = sorted(text(topic) for topic in present)
        else:
            wanted = list(topics)
        members = await self._read_presence(wanted)
        return {topic: _state(m.values()) for topic, m in members.items() if m}


def _resolve(future: asyncio.Future[StoredMessage], message: StoredMessage) -> None:
    if not future.done():
        future.set_result(message)
