"""The hub: routes client frames to channels, tracks subscriptions and presence, fans out.

It holds no sockets: clients write through their transport (``connection.py``)
and messages are numbered, stored and delivered by the broker
(``brokers/``). A broadcast is encoded and framed once; the same bytes are
queued on every subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from .brokers.base import Broker
from .channel import Channel, Reject, Router
from .connection import Client, Identity, RateLimiter, Subscription, Transport
from .constants import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_TOPICS,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_LIMIT,
    MAX_IN_FLIGHT,
    PING_TEXT,
    CloseCode,
    ErrorCode,
    Event,
    Kind,
    Status,
)
from .history.base import Draft, Page, StoredMessage, StoreUnavailable
from .message import Message
from .presence import Presence, State, diff, make_meta
from .protocol import (
    JSON,
    Frame,
    ProtocolError,
    Ref,
    decode,
    dumps,
    encode_event,
    encode_message,
    encode_reply,
    error_frame,
    error_reply,
    ok_reply,
    peek,
    ws_text_frame,
)

log = logging.getLogger(__name__)

#: ``from`` of messages published outside any client's hook.
SERVER_SENDER_JSON = dumps({"id": "server", "user": "server", "name": "server", "kind": "server"})


@dataclass(frozen=True)
class Limits:
    """Per-connection limits (the ``ChannelsApp`` traits of the same names)."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_topics_per_connection: int = DEFAULT_MAX_TOPICS
    rate_limit: float = DEFAULT_RATE_LIMIT
    rate_burst: int = DEFAULT_RATE_BURST
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    hook_timeout: float = 10.0


class HookError(Exception):
    """A hook failed; ``code`` and ``detail`` are what the client is told."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class _HookContext:
    client: Client | None
    topic: str
    published: list[asyncio.Future[StoredMessage]] = field(default_factory=list)
    #: False once the hook returned: a task it started keeps the default topic, but
    #: publishes as the server and is no longer collected for the reply.
    active: bool = True


_context: contextvars.ContextVar[_HookContext | None] = contextvars.ContextVar(
    "jupyter_channels_hook", default=None
)


class Published:
    """What ``broadcast`` and friends return: awaiting it gives the message's offset."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[StoredMessage]) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, int]:
        message = yield from self.future.__await__()
        return message.offset


@dataclass
class _Topic:
    subscribers: dict[str, Subscription] = field(default_factory=dict)
    presence: Presence = field(default_factory=Presence)
    subscribed: asyncio.Future[None] | None = None


def _log_failure(future: asyncio.Future[StoredMessage]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("publish failed: %s", future.exception())


def _sender_json(context: _HookContext | None) -> str:
    """``from`` of what is published now: the client whose hook is running, else the server."""
    if context is not None and context.active and context.client is not None:
        return context.client.sender_json
    return SERVER_SENDER_JSON


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Hub:
    """Every connection and topic of one server."""

    def __init__(self, router: Router, broker: Broker, limits: Limits | None = None) -> None:
        self.router = router
        self.broker = broker
        self.limits = limits or Limits()
        self.clients: dict[str, Client] = {}
        self.topics: dict[str, _Topic] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._ping_frame = ws_text_frame(PING_TEXT)
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
        for client in list(self.clients.values()):
            client.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.broker.stop()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
    ) -> Client:
        """Register a new connection."""
        limits = self.limits
        client = Client(
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
        return client

    def _gone(self, client: Client) -> None:
        self._spawn(self._drop(client))

    async def _drop(self, client: Client) -> None:
        """A connection ended: leave every topic, running ``handle_leave``."""
        for topic in list(client.subscriptions):
            await self._remove(client, topic)
        self.clients.pop(client.id, None)

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
            self._message(client, frame)
            if len(client.in_flight) >= MAX_IN_FLIGHT:
                # Stop reading this socket until one finishes: a fast sender is
                # slowed by TCP instead of growing the server's memory.
                await asyncio.wait(client.in_flight, return_when=asyncio.FIRST_COMPLETED)
        elif event is Event.JOIN:
            await self._join(client, frame)
        elif event is Event.LEAVE:
            if client.in_flight:
                # Messages sent before the leave are handled (and seen by the sender) first.
                await asyncio.wait(list(client.in_flight))
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

    def _fail(
        self,
        client: Client,
        code: ErrorCode,
        detail: str,
        ref: Ref | None,
        topic: str | None = None,
    ) -> None:
        if ref is None:
            client.send_text(error_frame(code, detail))
        else:
            client.send_text(error_reply(topic, ref, code, detail))

    def _reply(self, client: Client, frame: Frame, response: JSON = None) -> None:
        if frame.ref is not None:
            client.send_text(ok_reply(frame.topic, frame.ref, response))

    # -- join --------------------------------------------------------------------------------------

    async def _join(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None  # decode() guarantees it for join
        existing = client.subscriptions.get(topic)
        if existing is not None:
            # Already joined: answer like a join (with history) without running the hook again.
            try:
                page = await self.broker.read(topic, since=frame.since, limit=frame.history)
            except StoreUnavailable as e:
                self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
                return
            if frame.ref is not None:
                client.send_text(self._join_reply(topic, frame.ref, page))
            # presence_state follows every join (the client may have lost its copy).
            if existing.presence:
                members = self.presence_state(topic)
                client.send_text(encode_event(Event.PRESENCE_STATE, topic, members))
            return
        if len(client.subscriptions) >= self.limits.max_topics_per_connection:
            self._fail(
                client,
                ErrorCode.TOO_MANY_TOPICS,
                f"already joined max_topics_per_connection "
                f"({self.limits.max_topics_per_connection}) topics",
                frame.ref,
                topic,
            )
            return
        channel = self.router.match(topic)
        if channel is None:
            self._fail(
                client, ErrorCode.UNMATCHED_TOPIC, f"no channel serves {topic!r}", frame.ref, topic
            )
            return

        # Subscribe first, holding live messages back: together with the history
        # read this gives every message once, with no gap.
        sub = Subscription(client, topic, frame.payload, presence=frame.presence)
        client.subscriptions[topic] = sub
        state = self._topic(topic)
        state.subscribers[client.id] = sub
        try:
            if state.subscribed is not None:
                await state.subscribed
            page = await self.broker.read(topic, since=frame.since, limit=frame.history)
            await self._hook(
                channel.handle_joined,
                client,
                topic,
                Message(topic, None, frame.payload, frame.ref),
            )
        except Reject as e:
            await self._remove(client, topic, run_hook=False)
            self._fail(client, ErrorCode.JOIN_REJECTED, e.detail, frame.ref, topic)
            return
        except (HookError, StoreUnavailable) as e:
            await self._remove(client, topic, run_hook=False)
            code, detail = (
                (e.code, e.detail)
                if isinstance(e, HookError)
                else (
                    ErrorCode.UNAVAILABLE,
                    str(e),
                )
            )
            self._fail(client, code, detail, frame.ref, topic)
            return
        if client.subscriptions.get(topic) is not sub:
            # The connection dropped while handle_joined ran: it was joined, so it leaves.
            with contextlib.suppress(HookError, Reject):
                await self._hook(channel.handle_leave, client, topic)
            return

        if frame.ref is not None:
            client.send_text(self._join_reply(topic, frame.ref, page))
        sub.last_offset = page.offset
        held, sub.pending = sub.pending or [], None
        for offset, data in held:
            if offset > sub.last_offset:
                sub.last_offset = offset
                client.send(data)

        user = client.user
        meta = make_meta(client.id, client.kind.value, user.display_name, user.initials, user.color)
        joins = state.presence.join(user.username, meta)
        self.broker.track(topic, user.username, meta)
        if sub.presence:
            client.send_text(encode_event(Event.PRESENCE_STATE, topic, state.presence.state()))
        self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(joins=joins)), client)

    def _join_reply(self, topic: str, ref: Ref, page: Page) -> str:
        frames = ",".join(m.frame for m in page.messages)
        response = (
            f'{{"offset":{page.offset},"epoch":{dumps(page.epoch)},'
            f'"recovered":{"true" if page.recovered else "false"},"messages":[{frames}]}}'
        )
        return encode_reply(topic, ref, response, Status.OK)

    def _topic(self, topic: str) -> _Topic:
        state = self.topics.get(topic)
        if state is None:
            state = self.topics[topic] = _Topic()
            state.subscribed = asyncio.ensure_future(self.broker.subscribe(topic))
        return state

    # -- message -----------------------------------------------------------------------------------

    def _message(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        sub = client.subscriptions.get(topic)
        if sub is None or sub.pending is not None:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return
        if not client.can_write:
            self._fail(
                client,
                ErrorCode.UNAUTHORIZED,
                "not authorized to write to channels",
                frame.ref,
                topic,
            )
            return
        channel = self.router.match(topic)
        if channel is None:
            self._fail(
                client, ErrorCode.UNMATCHED_TOPIC, f"no channel serves {topic!r}", frame.ref, topic
            )
            return
        message = Message(topic, frame.subject, frame.payload, frame.ref)
        task = self._spawn(self._run_message(channel, client, message))
        client.in_flight.add(task)
        task.add_done_callback(client.in_flight.discard)

    async def _run_message(self, channel: Channel, client: Client, message: Message) -> None:
        try:
            response = await self.handle_message(channel, client, message)
        except HookError as e:
            self._fail(client, e.code, e.detail, message.ref, message.topic)
            return
        if message.ref is not None:
            client.send_text(ok_reply(message.topic, message.ref, response))

    async def handle_message(
        self, channel: Channel, client: Client, message: Message
    ) -> dict[str, JSON]:
        """Run ``handle_message`` and wait until what it published is stored.

        Returns the ok reply's ``response``; raises :class:`HookError`.
        """
        context = _HookContext(client, message.topic)
        try:
            result = await self._hook(
                channel.handle_message, client, message.topic, message, context=context
            )
        except Reject as e:
            raise HookError(ErrorCode.UNAUTHORIZED, e.detail) from None
        response: dict[str, JSON] = {}
        if context.published:
            try:
                stored = await asyncio.gather(*context.published)
            except StoreUnavailable as e:
                raise HookError(ErrorCode.UNAVAILABLE, str(e)) from None
            finally:
                context.published.clear()  # they hold whole messages; let them go now
            response["offset"] = stored[-1].offset
        if isinstance(result, dict):
            response.update(result)
        try:
            dumps(response)
        except (TypeError, ValueError) as e:
            log.error("%s.handle_message returned a value that is not JSON: %s", channel, e)
            raise HookError(ErrorCode.INTERNAL_ERROR, "the channel's reply is not JSON") from None
        return response

    async def _hook(
        self,
        fn: Callable[..., Any],
        client: Client,
        topic: str,
        *args: Any,
        context: _HookContext | None = None,
    ) -> Any:
        """Run a hook with a timeout; ``Reject`` passes through, other failures become
        :class:`HookError` (logged)."""
        collect = context is not None
        context = context or _HookContext(client, topic)
        token = _context.set(context)
        try:
            return await asyncio.wait_for(_call(fn, client, *args), self.limits.hook_timeout)
        except Reject:
            raise
        except asyncio.TimeoutError:
            log.warning(
                "%s timed out after %s s on %s", fn.__qualname__, self.limits.hook_timeout, topic
            )
            raise HookError(
                ErrorCode.TIMEOUT, f"the channel did not answer within {self.limits.hook_timeout} s"
            ) from None
        except StoreUnavailable as e:
            raise HookError(ErrorCode.UNAVAILABLE, str(e)) from None
        except Exception:
            log.exception("%s failed on topic %r for %r", fn.__qualname__, topic, client)
            raise HookError(ErrorCode.INTERNAL_ERROR, "the channel failed to handle this") from None
        finally:
            _context.reset(token)
            context.active = False
            if not collect:
                context.published.clear()

    def context_topic(self) -> str:
        context = _context.get()
        if context is None:
            raise RuntimeError("no topic: pass topic= when calling outside a channel hook")
        return context.topic

    # -- leave -------------------------------------------------------------------------------------

    async def _leave(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        if topic not in client.subscriptions:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return
        try:
            await self._remove(client, topic)
        except HookError as e:
            self._fail(client, e.code, e.detail, frame.ref, topic)
            return
        self._reply(client, frame)

    async def _remove(self, client: Client, topic: str, *, run_hook: bool = True) -> None:
        """Unsubscribe ``client`` from ``topic``; then run ``handle_leave`` (errors: HookError)."""
        sub = client.subscriptions.pop(topic, None)
        if sub is None:
            return
        state = self.topics.get(topic)
        if state is not None:
            state.subscribers.pop(client.id, None)
            leaves = state.presence.leave(client.id)
            if leaves:
                self.broker.untrack(topic, client.id)
                self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(leaves=leaves)))
            if not state.subscribers:
                del self.topics[topic]
                await self.broker.unsubscribe(topic)
        channel = self.router.match(topic)
        if run_hook and sub.pending is None and channel is not None:
            try:
                await self._hook(channel.handle_leave, client, topic)
            except Reject:
                pass  # nothing to refuse on leave
            except HookError:
                if not client.closed:
                    raise

    # -- history -----------------------------------------------------------------------------------

    async def _history(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        sub = client.subscriptions.get(topic)
        if sub is None or sub.pending is not None:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return
        if frame.ref is None:
            return
        try:
            page = await self.broker.read(topic, before=frame.before, limit=frame.limit)
        except StoreUnavailable as e:
            self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
            return
        frames = ",".join(m.frame for m in page.messages)
        client.send_text(encode_reply(topic, frame.ref, f'{{"messages":[{frames}]}}', Status.OK))

    # -- publishing and fan-out --------------------------------------------------------------------

    def publish(
        self, topic: str, subject: str, payload: JSON, *, exclude: str | None = None
    ) -> Published:
        """Number, store and broadcast a message; ``from`` is the client whose hook is running."""
        context = _context.get()
        sender = _sender_json(context)
        draft = Draft(topic, subject, dumps(payload), sender, exclude)
        future = self.broker.publish(draft)
        future.add_done_callback(_log_failure)
        if context is not None and context.active:
            context.published.append(future)
        return Published(future)

    def _deliver(self, message: StoredMessage) -> None:
        """Broker callback: send a stored message to this server's subscribers."""
        state = self.topics.get(message.topic)
        if state is None:
            return
        data = ws_text_frame(message.frame)
        offset = message.offset
        exclude = message.exclude
        for sub in state.subscribers.values():
            if sub.pending is not None:
                sub.pending.append((offset, data))
            elif offset > sub.last_offset:
                sub.last_offset = offset
                if sub.client.id != exclude:
                    sub.client.send(data)

    def _remote_presence(self, topic: str, joins: State, leaves: State) -> None:
        """Broker callback: members on other servers came or went."""
        state = self.topics.get(topic)
        if state is None:
            return
        for entry in leaves.values():
            for meta in entry["metas"]:
                state.presence.leave(meta["phx_ref"])
        for username, entry in joins.items():
            for meta in entry["metas"]:
                state.presence.join(username, meta)
        self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(joins, leaves)))

    def _history_lost(self, topic: str) -> None:
        """Broker callback: the topic's offsets start again. Subscribers' offsets are void;
        closing their connections makes clients reconnect and rejoin with ``since``."""
        state = self.topics.get(topic)
        if state is None:
            return
        log.warning(
            "history of %r was lost; its %d subscribers reconnect", topic, len(state.subscribers)
        )
        for sub in list(state.subscribers.values()):
            sub.client.close(CloseCode.SERVICE_RESTART, "history lost: rejoin")

    def _to_topic(self, state: _Topic, text: str, skip: Client | None = None) -> None:
        """Send a presence frame to every joined subscriber that wants presence.

        Each join or leave reaches every member: N members joining cost N x N frames,
        which is why a join may say ``"presence": false``.
        """
        data = ws_text_frame(text)
        for sub in state.subscribers.values():
            if sub.pending is None and sub.presence and sub.client is not skip:
                sub.client.send(data)

    def push(self, client_id: str, topic: str, subject: str, payload: JSON) -> asyncio.Future[None]:
        """Send one ``message`` frame (offset ``null``) to one client."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        client = self.clients.get(client_id)
        if client is None:
            return future
        context = _context.get()
        sender = _sender_json(context)
        ts = int(time.time() * 1000)
        client.send_text(encode_message(topic, subject, dumps(payload), None, ts, sender))
        return future

    def kick(self, client_id: str, topic: str, reason: str) -> asyncio.Task[None]:
        """End one subscription: a ``close`` frame, then ``handle_leave``."""
        return self._spawn(self._kick(client_id, topic, reason))

    async def _kick(self, client_id: str, topic: str, reason: str) -> None:
        client = self.clients.get(client_id)
        if client is None or topic not in client.subscriptions:
            return
        client.send_text(encode_event(Event.CLOSE, topic, {"reason": reason}))
        with contextlib.suppress(HookError):  # already logged by _hook
            await self._remove(client, topic)

    # -- queries (REST) ----------------------------------------------------------------------------

    def presence_state(self, topic: str) -> dict[str, Any]:
        state = self.topics.get(topic)
        return state.presence.state() if state is not None else {}

    async def topic_presence(self, topic: str) -> State:
        """Every server's members of ``topic`` (raises ``StoreUnavailable``)."""
        state = self.topics.get(topic)
        if state is not None:
            return state.presence.state()
        return (await self.broker.remote_presence([topic])).get(topic, {})

    async def topic_list(self) -> list[dict[str, Any]]:
        offsets = await self.broker.topics()
        remote = await self.broker.remote_presence()
        names = set(offsets) | set(remote) | {t for t, s in self.topics.items() if len(s.presence)}
        return [
            {
                "topic": name,
                "members": len(self.topics[name].presence.usernames())
                if name in self.topics
                else len(remote.get(name, {})),
                "offset": offsets.get(name, 0),
            }
            for name in sorted(names)
        ]
