"""What every part of the hub shares: its state, limits, and how hooks are run.

The hub holds no sockets: clients write through their transport
(``connection.py``) and messages are numbered, stored and delivered by the
broker (``brokers/``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..brokers.base import Broker
from ..channel import Channel, Reject, Router
from ..connection import Client, Subscription
from ..constants import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOIN_BURST,
    DEFAULT_JOIN_RATE,
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_JOIN_PAYLOAD_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_TOPICS,
    DEFAULT_PRESENCE_INTERVAL,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_LIMIT,
    ErrorCode,
)
from ..history.base import StoredMessage, StoreUnavailable
from ..presence import Entry, Presence, State
from ..protocol import JSON, Frame, Ref, WsFrame, dumps, error_frame, error_reply, ok_reply
from .permissions import Permissions

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
    max_join_payload_size: int = DEFAULT_MAX_JOIN_PAYLOAD_SIZE
    max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
    presence_interval: float = DEFAULT_PRESENCE_INTERVAL
    join_rate: float = DEFAULT_JOIN_RATE
    join_burst: int = DEFAULT_JOIN_BURST


class HookError(Exception):
    """A hook failed; ``code`` and ``detail`` are what the client is told."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class HookContext:
    client: Client | None
    topic: str
    #: What the hook published: stored messages, and ``None`` for ephemeral ones once sent.
    published: list[asyncio.Future[StoredMessage | None]] = field(default_factory=list)
    #: False once the hook returned: a task it started keeps the default topic, but
    #: publishes as the server and is no longer collected for the reply.
    active: bool = True


current_hook: contextvars.ContextVar[HookContext | None] = contextvars.ContextVar(
    "jupyter_channels_hook", default=None
)


def sender_json(context: HookContext | None) -> str:
    """``from`` of what is published now: the client whose hook is running, else the server."""
    if context is not None and context.active and context.client is not None:
        return context.client.sender_json
    return SERVER_SENDER_JSON


@dataclass
class TopicState:
    """One topic's local subscribers and presence."""

    subscribers: dict[str, Subscription] = field(default_factory=dict)
    presence: Presence = field(default_factory=Presence)
    subscribed: asyncio.Future[None] | None = None
    #: Connections whose membership changed since the last ``presence_diff``, with what
    #: they were before it (``None``: not members), in the order they changed.
    changed: dict[str, Entry | None] = field(default_factory=dict)
    #: The members as of the last ``presence_diff`` (what every joiner until the next
    #: one is sent), encoded once: as a frame, and left open for a joiner's own entry.
    snapshot: State | None = None
    state_open: bytes | None = None
    state_frame: WsFrame | None = None
    #: When (event loop time) the last ``presence_diff`` was sent.
    last_diff: float = float("-inf")


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class HubBase:
    """The state the hub's parts share, and the helpers each of them uses."""

    def __init__(
        self,
        router: Router,
        broker: Broker,
        limits: Limits | None = None,
        permissions: Permissions | None = None,
    ) -> None:
        self.router = router
        self.broker = broker
        self.limits = limits or Limits()
        #: Who may join and send to which topics; no rules (everything allowed) by default.
        self.permissions = permissions or Permissions()
        self.clients: dict[str, Client] = {}
        self.topics: dict[str, TopicState] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Topics whose ``presence_diff`` is sent at the end of this interval.
        self._presence_due: dict[str, TopicState] = {}
        self._presence_timer: asyncio.TimerHandle | None = None
        #: Join admission (``join_rate``): when the next join's slot is due (loop time),
        #: and the last slot promised to a join told to come back.
        self._join_due = 0.0
        self._join_slot = 0.0
        #: Joins answered ``unavailable`` with ``retry_after`` so far.
        self.joins_refused = 0

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _topic(self, topic: str) -> TopicState:
        state = self.topics.get(topic)
        if state is None:
            state = self.topics[topic] = TopicState()
            state.subscribed = asyncio.ensure_future(self.broker.subscribe(topic))
        return state

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

    def _channel(self, client: Client, frame: Frame) -> Channel | None:
        """The channel serving the frame's topic; else ``unmatched_topic`` is answered."""
        topic = frame.topic
        channel = self.router.match(topic) if topic is not None else None
        if channel is None:
            self._fail(
                client, ErrorCode.UNMATCHED_TOPIC, f"no channel serves {topic!r}", frame.ref, topic
            )
        return channel

    def _joined(self, client: Client, frame: Frame) -> Subscription | None:
        """The client's joined subscription of the frame's topic; else ``not_joined``."""
        topic = frame.topic
        sub = client.subscriptions.get(topic) if topic is not None else None
        if sub is None or sub.pending is not None:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return None
        return sub

    def _reply(self, client: Client, frame: Frame, response: JSON = None) -> None:
        if frame.ref is not None:
            client.send_text(ok_reply(frame.topic, frame.ref, response))

    async def _hook(
        self,
        fn: Callable[..., Any],
        client: Client,
        topic: str,
        *args: Any,
        context: HookContext | None = None,
    ) -> Any:
        """Run a hook with a timeout; ``Reject`` passes through, other failures become
        :class:`HookError` (logged)."""
        collect = context is not None
        context = context or HookContext(client, topic)
        token = current_hook.set(context)
        try:
            # A task, not wait_for: wait_for waits for the cancelled hook to finish, and
            # a hook that swallows CancelledError would hold the caller past the deadline.
            task = asyncio.ensure_future(_call(fn, client, *args))
        finally:
            current_hook.reset(token)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.hook_timeout)
            if not done:
                task.cancel()
                task.add_done_callback(_abandoned(fn, topic))
                log.warning(
                    "%s timed out after %s s on %s",
                    fn.__qualname__,
                    self.limits.hook_timeout,
                    topic,
                )
                raise HookError(
                    ErrorCode.TIMEOUT,
                    f"the channel did not answer within {self.limits.hook_timeout} s",
                )
            return task.result()
        except (Reject, HookError):
            raise
        except asyncio.CancelledError:
            task.cancel()
            raise
        except StoreUnavailable as e:
            raise HookError(e.code, str(e)) from None
        except Exception:
            log.exception("%s failed on topic %r for %r", fn.__qualname__, topic, client)
            raise HookError(ErrorCode.INTERNAL_ERROR, "the channel failed to handle this") from None
        finally:
            context.active = False
            if not collect:
                context.published.clear()


def _abandoned(fn: Callable[..., Any], topic: str) -> Callable[[asyncio.Future[Any]], None]:
    """A done callback for a hook left behind at its deadline: say how it ended."""

    def done(task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            log.debug("%s on %s was cancelled after its timeout", fn.__qualname__, topic)
        elif task.exception() is not None:
            log.warning(
                "%s on %s failed after its timeout: %r", fn.__qualname__, topic, task.exception()
            )
        else:
            log.warning(
                "%s on %s ignored its cancellation and finished after its timeout; "
                "its result was dropped",
                fn.__qualname__,
                topic,
            )

    return done
