"""History in Redis, shared by every server that uses the same Redis database.

One Lua script numbers, stores and publishes each message in a single step: it
increments the topic's offset, appends the frame to the topic's stream (capped
at ``history_size``) and publishes it on the topic's channel. So offsets are
global per topic and gapless, and every subscriber on every server receives
them in offset order. Reads are a script too, so a page and the topic's last
offset come from one instant. Keys and channels are listed in :class:`Keys` and
in ``docs/scale-out.md``.

Appends are sent in call order, in group commits: everything queued while one
pipeline is on the wire goes in the next. Nothing is retried: a message whose
pipeline failed gets ``StoreUnavailable`` (it may or may not have been stored,
but it was never acknowledged). A read waits for the appends queued before it,
so it sees every message this server published before it, as with the
embedded store; then it runs on a connection of its own, so a big page never
holds up the appends queued after it.

Needs the ``redis`` extra (``redis>=5``); imported only when a ``redis://`` or
``rediss://`` broker is selected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlunparse

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from ..protocol import message_frame_parts
from .base import Draft, HistoryStore, Page, Retained, StoredMessage, StoreUnavailable

log = logging.getLogger(__name__)

#: Every key and channel starts with this.
DEFAULT_PREFIX = "channels:"
#: Seconds to open a connection, and to wait for any reply, before Redis counts as down.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
#: Offsets and ``before`` beyond this cannot exist (and Lua numbers are doubles).
_MAX_OFFSET = 2**53
#: The ``exclude`` field of a published message that excludes nobody.
NO_EXCLUDE = "-"

# KEYS: epoch, offsets, stream. ARGV: topic, frame head, frame tail, cap, new epoch,
# channel, exclude, max topics. Returns {offset, ts, epoch}; offset 0: a new topic
# refused, the store holding max topics already.
APPEND_LUA = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[1], epoch)
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[8]) then
  return {0, 0, epoch}
end
local offset = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
-- The counter stays ahead of the stream even if its hash alone was lost: never reuse.
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
if top then
  local newest = tonumber(string.match(top[1], '^(%d+)'))
  if newest >= offset then
    offset = newest + 1
    redis.call('HSET', KEYS[2], ARGV[1], offset)
  end
end
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local o, t = string.format('%d', offset), string.format('%d', ts)
local frame = ARGV[2] .. o .. ',"ts":' .. t .. ARGV[3]
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], o .. '-0', 't', t, 'f', frame)
redis.call('PUBLISH', ARGV[6], 'm ' .. o .. ' ' .. t .. ' ' .. ARGV[7] .. ' ' .. frame)
return {offset, ts, epoch}
"""

# KEYS: epoch, offsets, stream. ARGV: topic, mode (since|before|newest), n, limit, cap,
# new epoch, max bytes (0: no bound). Returns {last offset, epoch, recovered (0|1),
# truncated (0|1), stream entries oldest first}. Entries are fetched a few at a time,
# so a page that is full stops reading (and copying) big ones.
READ_LUA = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[6]
  redis.call('SET', KEYS[1], epoch)
end
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local mode, n, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, budget = tonumber(ARGV[5]), tonumber(ARGV[7])
local BATCH = 16
local function offset_of(entry) return tonumber(string.match(entry[1], '^(%d+)')) end
local size = 0
-- Whether one more entry fits the page; the first always does.
local function fits(page, entry)
  local bytes = #entry[2][4]  -- fields: t, ts, f, frame
  if budget > 0 and #page > 0 and size + bytes > budget then return false end
  size = size + bytes
  return true
end
local function oldest(from, count)
  local page = {}
  while #page < count do
    local rows = redis.call('XRANGE', KEYS[3], string.format('%d', from), '+',
                            'COUNT', math.min(BATCH, count - #page))
    if #rows == 0 then return page end
    for _, row in ipairs(rows) do
      if not fits(page, row) then return page end
      page[#page + 1] = row
    end
    from = offset_of(rows[#rows]) + 1
  end
  return page
end
local function newest(before, count)
  local page, stop, full = {}, before - 1, false
  while #page < count and stop >= 1 and not full do
    local rows = redis.call('XREVRANGE', KEYS[3], string.format('%d', stop), '-',
                            'COUNT', math.min(BATCH, count - #page))
    if #rows == 0 then break end
    for _, row in ipairs(rows) do
      if not fits(page, row) then full = true break end
      page[#page + 1] = row
    end
    stop = offset_of(rows[#rows]) - 1
  end
  local out = {}
  for i = #page, 1, -1 do out[#out + 1] = page[i] end
  return out, full
end
local recovered, truncated, entries = 1, false, {}
if mode == 'since' then
  local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
  if n == last then
    entries = {}
  elseif n < last and head and offset_of(head) <= n + 1 then
    entries = oldest(n + 1, limit)
    local reached = n
    if #entries > 0 then reached = offset_of(entries[#entries]) end
    truncated = reached < last
  else
    recovered = 0
    entries, truncated = newest(last + 1, math.min(limit, cap))
    -- Asked for everything after n: older retained ones left out count too.
    if #entries > 0 and offset_of(entries[1]) > offset_of(head) then truncated = true end
  end
elseif mode == 'before' then
  entries, truncated = newest(math.min(n, last + 1), limit)
else
  entries, truncated = newest(last + 1, limit)
end
return {last, epoch, recovered, truncated and 1 or 0, entries}
"""


def sha(script: str) -> str:
    """The SHA1 Redis knows a script by."""
    return hashlib.sha1(script.encode()).hexdigest()


async def aclose(closable: Any) -> None:
    """``aclose()`` (redis>=5.0.1), else ``close()``."""
    close = getattr(closable, "aclose", None) or closable.close
    await close()


_APPEND_SHA = sha(APPEND_LUA)


@dataclass(frozen=True, slots=True)
class _Call:
    """A queued script call; ``draft`` for appends."""

    sha: str
    args: list[bytes]
    future: asyncio.Future[Any]
    draft: Draft | None


def _encode(args: list[str]) -> list[bytes]:
    return [arg.encode() for arg in args]


class Keys:
    """The names of every Redis key and channel, below one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        #: STRING: the history epoch; a new one when Redis lost its data.
        self.epoch = prefix + "epoch"
        #: HASH: topic -> last offset.
        self.offsets = prefix + "offsets"
        #: ZSET: server id -> when its presence expires (ms), refreshed by each server.
        self.servers = prefix + "servers"
        #: SET: topics that have members on some server.
        self.present = prefix + "present"
        self.live_prefix = prefix + "live:"

    def history(self, topic: str) -> str:
        """STREAM: the retained messages of a topic, with ids ``<offset>-0``."""
        return f"{self.prefix}history:{topic}"

    def live(self, topic: str) -> str:
        """Pub/sub channel: a topic's messages and presence changes, as they happen."""
        return self.live_prefix + topic

    def presence(self, topic: str) -> str:
        """HASH: ``<server id>:<connection id>`` -> the member, of every server."""
        return f"{self.prefix}presence:{topic}"

    def mutes(self, topic: str) -> str:
        """HASH: username -> until when (ms since the epoch) they are muted in a topic."""
        return f"{self.prefix}mutes:{topic}"

    def server(self, server_id: str) -> str:
        """SET: the topics a server has members on (to clean up after it dies)."""
        return f"{self.prefix}server:{server_id}"


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunparse(parts._replace(netloc=user + host))


def connect(url: str) -> Redis:
    """A client for ``url`` that never retries a command by itself: a retried append
    could store a message twice. Failures surface; callers decide."""
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


class Health:
    """Whether Redis answers, logged once per outage (not once per failed call)."""

    def __init__(self, url: str) -> None:
        self.url = redact(url)
        self.down_since: float | None = None
        #: Called when Redis answers again after an outage.
        self.on_back: Callable[[], None] | None = None

    def failed(self, error: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("Redis at %s is unavailable (%s); reconnecting", self.url, error)

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning(
                "Redis at %s is available again after %.1f s",
                self.url,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
            if self.on_back is not None:
                self.on_back()


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes; typed as either)."""
    return value.decode() if isinstance(value, bytes) else value


def _offset(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class RedisHistory(HistoryStore):
    """Offsets and history in Redis (see the module docstring)."""

    def __init__(self, url: str, history_size: int, *, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(history_size)
        self.url = url
        self.keys = Keys(prefix)
        self.health = Health(url)
        self.epoch = ""
        #: Called with the new epoch when Redis lost its data (every topic's history).
        self.on_epoch: Callable[[str], None] | None = None
        self.redis: Redis | None = None
        self._queue: list[_Call] = []
        #: The batch on the wire.
        self._sending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect; an unreachable Redis is logged, not raised: calls fail until it is back."""
        self.redis = connect(self.url)
        try:
            await self.redis.set(self.keys.epoch, uuid.uuid4().hex[:16], nx=True)
            epoch = await self.redis.get(self.keys.epoch)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            return
        self.health.ok()
        if epoch is not None:
            self.saw_epoch(text(epoch))

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        redis, self.redis = self.redis, None
        if redis is not None:
            await aclose(redis)

    def saw_epoch(self, epoch: str) -> None:
        """Record the epoch a script returned; a change means Redis lost its data."""
        if epoch == self.epoch:
            return
        known, self.epoch = self.epoch, epoch
        if known and self.on_epoch is not None:
            log.warning("Redis lost the channels history (epoch %s -> %s)", known, epoch)
            self.on_epoch(epoch)

    async def eval(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by its SHA, loading it first if Redis does not have it (yet)."""
        redis = self.client()
        try:
            try:
                result = await redis.evalsha(sha(script), len(keys), *keys, *args)
            except NoScriptError:
                await redis.script_load(script)
                result = await redis.evalsha(sha(script), len(keys), *keys, *args)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise StoreUnavailable(f"Redis is unavailable: {e}") from e
        self.health.ok()
        return result

    def client(self) -> Redis:
        if self.redis is None:
            raise StoreUnavailable("the history store is closed")
        return self.redis

    # -- the ordered queue ---------------------------------------------------------------------

    def _call(self, sha: str, args: list[bytes], draft: Draft | None = None) -> asyncio.Future[Any]:
        """Queue one script call; calls run in the order they were queued, in pipelines."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(sha, args, future, draft))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                self._sending = batch
                try:
                    results = await self._run_batch(batch)
                except (RedisError, OSError) as e:
                    self.health.failed(e)
                    for call in batch:
                        if not call.future.done():
                            call.future.set_exception(
                                StoreUnavailable(f"Redis is unavailable: {e}")
                            )
                    continue
                self.health.ok()
                self._done(batch, results)
        finally:
            self._sending = []
            self._flusher = None

    async def _run_batch(self, batch: list[_Call]) -> list[Any]:
        """One pipeline: the script (loaded again: cheap, and Redis may have restarted
        without it), then every call, executed in order."""
        pipe = self.client().pipeline(transaction=False)
        pipe.script_load(APPEND_LUA)
        for call in batch:
            pipe.evalsha(call.sha, 3, *call.args)
        results = await pipe.execute(raise_on_error=False)
        return list(results[1:])

    def _done(self, batch: list[_Call], results: list[Any]) -> None:
        stored: list[tuple[StoredMessage, asyncio.Future[Any]]] = []
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error("Redis refused a call: %s", result)
                call.future.set_exception(StoreUnavailable(f"Redis refused it: {result}"))
            elif call.draft is None:
                call.future.set_result(result)
            else:
                offset, ts, epoch = result
                self.saw_epoch(text(epoch))
                if int(offset) == 0:
                    call.future.set_exception(self.refuse_new_topic())
                    continue
                stored.append((call.draft.stored(int(offset), int(ts)), call.future))
        if self.on_commit is not None and stored:
            try:
                self.on_commit([message for message, _ in stored])
            except Exception:
                # Stored is stored: a delivery bug must not leave senders waiting.
                log.exception("history store: on_commit failed")
        for message, future in stored:
            if not future.done():
                future.set_result(message)

    # -- writing ----------------------------------------------------------------------------

    def append(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        if self.redis is None:
            future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
            future.set_exception(StoreUnavailable("the history store is closed"))
            return future
        head, tail = message_frame_parts(
            draft.topic, draft.subject, draft.payload_json, draft.sender_json
        )
        try:
            # Encoded now so that text UTF-8 cannot carry fails this message alone.
            args = _encode(
                [
                    *self._topic_keys(draft.topic),
                    *(draft.topic, head, tail, str(self.history_size), uuid.uuid4().hex[:16]),
                    *(self.keys.live(draft.topic), draft.exclude or NO_EXCLUDE),
                    str(self.max_topics),
                ]
            )
        except UnicodeEncodeError as e:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(StoreUnavailable(f"the message cannot be stored: {e}"))
            return future
        return self._call(_APPEND_SHA, args, draft)

    def _topic_keys(self, topic: str) -> list[str]:
        return [self.keys.epoch, self.keys.offsets, self.keys.history(topic)]

    # -- reading ----------------------------------------------------------------------------

    async def read(
        self,
        topic: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
    ) -> Page:
        """Read a topic (see ``HistoryStore.read``), once this server's earlier appends are
        done: a read sees every message published here before it was called."""
        if since is not None:
            mode, n = "since", min(since, _MAX_OFFSET)
        elif before is not None:
            mode, n = "before", min(before, _MAX_OFFSET)
        else:
            mode, n = "newest", 0
        if self.redis is None:
            raise StoreUnavailable("the history store is closed")
        earlier = [call.future for call in (*self._sending, *self._queue)]
        if earlier:
            await asyncio.wait(earlier)
        args = [topic, mode, str(n), str(max(limit, 0)), str(self.history_size)]
        args += [uuid.uuid4().hex[:16], str(max_bytes or 0)]
        keys = self._topic_keys(topic)
        last, epoch, recovered, truncated, entries = await self.eval(READ_LUA, keys, args)
        self.saw_epoch(text(epoch))
        messages = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            messages.append(Retained(_offset(entry_id), int(values[b"t"]), values[b"f"]))
        return Page(messages, int(last), text(epoch), bool(recovered), bool(truncated))

    async def topics(self) -> dict[str, int]:
        try:
            offsets = await self.client().hgetall(self.keys.offsets)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise StoreUnavailable(f"Redis is unavailable: {e}") from e
        return {text(topic): int(offset) for topic, offset in offsets.items()}

    async def message_at(self, topic: str, offset: int) -> Retained | None:
        if offset < 1 or offset > _MAX_OFFSET:
            return None
        entry_id = f"{offset}-0"
        try:
            rows = await self.client().xrange(self.keys.history(topic), entry_id, entry_id)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise StoreUnavailable(f"Redis is unavailable: {e}") from e
        if not rows:
            return None
        fields: dict[Any, Any] = rows[0][1] or {}
        frame = fields[b"f"]
        data = frame.encode() if isinstance(frame, str) else bytes(frame)
        return Retained(offset, int(fields[b"t"]), data)

    async def muted_until(self, topic: str, username: str) -> int | None:
        try:
            until = await self.client().hget(self.keys.mutes(topic), username)
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise StoreUnavailable(f"Redis is unavailable: {e}") from e
        return None if until is None else int(until)

    async def mute(self, topic: str, username: str, until: int | None) -> None:
        key = self.keys.mutes(topic)
        try:
            if until is None:
                await self.client().hdel(key, username)
            else:
                await self.client().hset(key, username, str(until))
        except (RedisError, OSError) as e:
            self.health.failed(e)
            raise StoreUnavailable(f"Redis is unavailable: {e}") from e
