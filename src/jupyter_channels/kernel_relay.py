"""The kernel's one channels connection, and the relay that lets widget pages use it.

Every ``ChannelWidget`` of a kernel shares one client connection per endpoint (one
WebSocket, one thread): its kernel side (``send``, ``on``, ``messages``) and, for pages
that cannot reach a channels endpoint themselves (VS Code, Colab, marimo, a server
without the extension), the page's frames. Such a page speaks the channels protocol
over anywidget's custom messages to a *link* here; the link answers heartbeats, joins
a topic on the shared connection (once per topic, counted per holder) and answers the
page's join from what that subscription received, forwards every message and presence
frame of its topics to the page, and relays pushes and history requests with the
page's refs. The page's client (``js/client.js``) does the rest as over a WebSocket:
rejoin with ``since``, dedupe by offset, buffering.

The custom messages (``{"kind": "relay", "link": id, ...}``):

- page -> kernel: ``{"op": "open" | "close"}``, ``{"op": "frames", "texts": [...]}``,
  each with a ``seq`` the kernel acknowledges (``{"op": "ack", "seq"}``) as soon as its
  main thread sees it: a page without an ack knows its kernel is busy.
- kernel -> page: ``{"op": "open"}`` once the connection is up, ``{"op": "frames",
  "texts"}``, ``{"op": "close", "reason"}`` (the page reconnects, as after a cut).

Links are scoped: closed by the page (its widget gone), with their widget
(``ChannelWidget.close``), and when the shared connection drops (the page reopens one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .client import ChannelError
from .client.aio import AsyncConnection
from .client.subscription import AsyncSubscription
from .client.sync import Connection
from .constants import DEFAULT_HISTORY_LIMIT, ErrorCode, Event, Status
from .message import Message
from .protocol import dumps

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What the shared connection keeps of each topic when it joins it: pages joining later get
#: their history from it.
HISTORY_ON_JOIN = DEFAULT_HISTORY_LIMIT
#: Seconds a link waits for the shared connection (or a rejoin) before giving up on a frame.
WAIT_CONNECTED = 30.0

Send = Callable[[dict[str, Any]], None]


class _RelayedAsyncConnection(AsyncConnection):
    """The asyncio client, telling its shared connection about every topic frame and loss."""

    shared: SharedConnection | None = None

    def _dispatch(self, frame: dict[str, Any]) -> None:
        super()._dispatch(frame)
        if self.shared is not None and frame.get("event") in _FORWARDED:
            self.shared._forward(frame)

    def _lost(self, why: str) -> None:
        super()._lost(why)
        if self.shared is not None:
            self.shared._lost(why)


_FORWARDED = frozenset(
    {Event.MESSAGE.value, Event.PRESENCE_STATE.value, Event.PRESENCE_DIFF.value, Event.CLOSE.value}
)


class _RelayedConnection(Connection):
    @staticmethod
    async def _open(url: str | None, token: str | None, **options: Any) -> AsyncConnection:
        return await _RelayedAsyncConnection(url, token, **options).open()


class SharedConnection:
    """One connection of this process to one endpoint, its topics held by widgets and links."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.conn = _RelayedConnection(url, token)
        self.url = self.conn.url
        self._aconn: _RelayedAsyncConnection = self.conn._aconn  # type: ignore[assignment]
        self._aconn.shared = self
        self.loop = self.conn._loop
        #: topic -> who holds it (a widget's kernel side, a link); left when nobody does.
        self._holders: dict[str, set[object]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.links: dict[str, Link] = {}

    def __repr__(self) -> str:
        return f"<SharedConnection {self.url} {self._aconn.state} links={len(self.links)}>"

    @property
    def state(self) -> str:
        return self.conn.state

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the connection's loop and wait for it (from another thread)."""
        return self.conn._call(coro, timeout)

    # -- topics ----------------------------------------------------------------------------------

    async def acquire(self, topic: str, holder: object) -> AsyncSubscription:
        """The connection's subscription of ``topic``, joined on first use; ``holder``
        holds it until ``release``. Raises ``ChannelError`` (a refused join)."""
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:
            sub = self._aconn.subscriptions.get(topic)
            if sub is None or sub.state == "closed":
                sub = await self._aconn.join(topic, history=HISTORY_ON_JOIN)
            self._holders.setdefault(topic, set()).add(holder)
            return sub

    async def release(self, topic: str, holder: object) -> None:
        """``holder`` is done with ``topic``: the topic is left once nobody holds it."""
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:
            holders = self._holders.get(topic)
            if holders is None or holder not in holders:
                return
            holders.discard(holder)
            if holders:
                return
            del self._holders[topic]
            sub = self._aconn.subscriptions.get(topic)
            if sub is None:
                return
            try:
                await sub.leave()
            except ChannelError as e:
                log.debug("leaving %s: %s", topic, e)

    def holders(self, topic: str) -> int:
        """How many hold ``topic`` (for tests and the docs' leak checks)."""
        return len(self._holders.get(topic, ()))

    @property
    def topics(self) -> list[str]:
        """The topics this connection is subscribed to."""
        return sorted(self._aconn.subscriptions)

    # -- links -----------------------------------------------------------------------------------

    def receive(self, link_id: str, op: str, texts: list[str], send: Send, owner: object) -> None:
        """A page's relay message (from the kernel's main thread)."""
        self.loop.call_soon_threadsafe(self._receive, link_id, op, texts, send, owner)

    def _receive(self, link_id: str, op: str, texts: list[str], send: Send, owner: object) -> None:
        link = self.links.get(link_id)
        if op == "open":
            if link is None:
                self.links[link_id] = link = Link(self, link_id, send, owner)
                link.start()
            return
        if link is None:
            if op == "frames":
                # A page still talking on a link this side closed (the connection dropped).
                send({"kind": "relay", "link": link_id, "op": "close", "reason": "no such link"})
            return
        if op == "close":
            self.close_link(link_id)
        elif op == "frames":
            for text in texts:
                link.inbox.put_nowait(text)

    def close_link(self, link_id: str) -> None:
        """Drop a link and release its topics (on the loop)."""
        link = self.links.pop(link_id, None)
        if link is not None:
            link.stop()

    def close_links_of(self, owner: object) -> None:
        """Close every link of ``owner`` (a widget being closed); from any thread."""

        async def close() -> None:
            for link_id, link in list(self.links.items()):
                if link.owner is owner:
                    self.close_link(link_id)

        if self.loop.is_running():
            self.call(close())

    def links_of(self, owner: object) -> int:
        return sum(1 for link in self.links.values() if link.owner is owner)

    def _forward(self, frame: dict[str, Any]) -> None:
        topic = frame.get("topic")
        text: str | None = None
        for link in list(self.links.values()):
            if topic in link.topics:
                text = text or dumps(frame)
                link.push(text)
            if frame.get("event") == Event.CLOSE.value:
                link.topics.discard(str(topic))

    def _lost(self, why: str) -> None:
        # The pages' topics are rejoined by the pages themselves, with their own `since`,
        # once the connection is back: close their links as a cut would.
        for link_id, link in list(self.links.items()):
            link.send_close(f"the kernel's connection was lost ({why})")
            self.close_link(link_id)


class Link:
    """One page's relayed connection: its frames in order, its topics, its outbox."""

    def __init__(self, shared: SharedConnection, link_id: str, send: Send, owner: object) -> None:
        self.shared = shared
        self.id = link_id
        self.owner = owner
        self._send = send
        self.topics: set[str] = set()
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self._outbox: list[str] = []
        self._flush_scheduled = False
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._worker = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for task in list(self._tasks):
            task.cancel()
        for topic in list(self.topics):
            self._spawn(self.shared.release(topic, self))
        self.topics.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- to the page -----------------------------------------------------------------------------

    def push(self, text: str) -> None:
        """Queue a frame for the page; frames of one loop iteration go in one message."""
        self._outbox.append(text)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.shared.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        texts, self._outbox = self._outbox, []
        if texts and self.id in self.shared.links:
            self._deliver({"kind": "relay", "link": self.id, "op": "frames", "texts": texts})

    def send_close(self, reason: str) -> None:
        self._flush()
        self._deliver({"kind": "relay", "link": self.id, "op": "close", "reason": reason})

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            self._send(message)
        except Exception:  # a closed comm: the widget is gone, and so is the page
            log.debug("relay link %s: cannot send to the page", self.id, exc_info=True)
            self.shared.close_link(self.id)

    def reply(self, ref: object, topic: object, status: Status, response: dict[str, Any]) -> None:
        frame = {
            "event": Event.REPLY.value,
            "topic": topic,
            "ref": ref,
            "payload": {"status": status.value, "response": response},
        }
        self.push(dumps(frame))

    def error(self, ref: object, topic: object, e: ChannelError) -> None:
        response: dict[str, Any] = {"reason": e.code, "detail": e.detail}
        if e.retry_after is not None:
            response["retry_after"] = int(e.retry_after * 1000)
        self.reply(ref, topic, Status.ERROR, response)

    # -- from the page ---------------------------------------------------------------------------

    async def _run(self) -> None:
        if not await self._connected():
            self.send_close("the kernel cannot reach the channels server")
            self.shared.close_link(self.id)
            return
        self._deliver({"kind": "relay", "link": self.id, "op": "open"})
        while True:
            text = await self.inbox.get()
            try:
                frame = json.loads(text)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            try:
                await self._handle(frame)
            except Exception:
                log.exception("relay link %s: frame %.200s", self.id, text)

    async def _connected(self) -> bool:
        aconn = self.shared._aconn
        deadline = asyncio.get_running_loop().time() + WAIT_CONNECTED
        while aconn.state != "connected":
            if aconn.state == "closed" or asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _handle(self, frame: dict[str, Any]) -> None:
        event, ref, topic = frame.get("event"), frame.get("ref"), frame.get("topic")
        if event == Event.HEARTBEAT.value:
            self.reply(ref, topic, Status.OK, {})
        elif event == Event.JOIN.value and isinstance(topic, str):
            # In order: pushes after a join go out once the topic is joined.
            await self._join(ref, topic, frame)
        elif event == Event.LEAVE.value and isinstance(topic, str):
            self.topics.discard(topic)
            await self.shared.release(topic, self)
            self.reply(ref, topic, Status.OK, {})
        elif not isinstance(topic, str) or topic not in self.topics:
            detail = f"not joined to {topic!r}"
            self.error(ref, topic, ChannelError(ErrorCode.NOT_JOINED.value, detail))
        else:
            # Written to the socket at once, in order; the reply comes back by itself.
            forwarded = {k: v for k, v in frame.items() if k != "ref"}
            self._spawn(self._request(ref, topic, forwarded))

    async def _request(self, ref: object, topic: str, frame: dict[str, Any]) -> None:
        try:
            response = await self.shared._aconn.request(frame)
        except ChannelError as e:
            self.error(ref, topic, e)
        else:
            self.reply(ref, topic, Status.OK, response)

    async def _join(self, ref: object, topic: str, frame: dict[str, Any]) -> None:
        try:
            sub = await self.shared.acquire(topic, self)
            await self._rejoined(sub)
        except ChannelError as e:
            self.error(ref, topic, e)
            return
        self.topics.add(topic)
        since, history = frame.get("since"), frame.get("history")
        kept = [m for m in sub.messages if m.offset is not None]
        if isinstance(since, int):
            shown = [m for m in kept if m.offset is not None and m.offset > since]
            # Complete when what this side kept reaches back to `since`.
            complete = (
                not kept
                or kept[0].offset is None
                or kept[0].offset <= since + 1
                or len(sub.messages) < (sub.messages.maxlen or 0)
            )
            recovered = sub.recovered and complete
        else:
            limit = history if isinstance(history, int) and history > 0 else 0
            shown = kept[-limit:] if limit else []
            recovered = True
        response = {
            "offset": sub.last_offset,
            "epoch": sub.epoch,
            "recovered": recovered,
            "can_send": sub.can_send,
            "messages": [_frame_of(m) for m in shown],
        }
        self.reply(ref, topic, Status.OK, response)
        state = {user: {"metas": metas} for user, metas in sub.members.items()}
        self.push(dumps({"event": Event.PRESENCE_STATE.value, "topic": topic, "payload": state}))

    async def _rejoined(self, sub: AsyncSubscription) -> None:
        """Wait while the shared connection rejoins ``sub`` after a cut."""
        deadline = asyncio.get_running_loop().time() + WAIT_CONNECTED
        while sub.state in ("joining", "rejoining", "retrying"):
            if asyncio.get_running_loop().time() > deadline:
                raise ChannelError(ErrorCode.TIMEOUT.value, "the kernel's connection is rejoining")
            await asyncio.sleep(0.05)
        if sub.state == "closed":
            raise ChannelError(ErrorCode.UNAVAILABLE.value, sub.close_reason or "closed")


def _frame_of(message: Message) -> dict[str, Any]:
    return {"event": Event.MESSAGE.value, **message.fields()}


_shared: dict[tuple[str | None, str | None], SharedConnection] = {}
_shared_lock = threading.Lock()


def shared_connection(url: str | None = None, token: str | None = None) -> SharedConnection:
    """This process's connection for ``url``/``token`` (discovered without them), made on
    first use and shared by every widget. Raises ``ChannelError`` (``ServerNotFound``)."""
    key = (url, token)
    with _shared_lock:
        shared = _shared.get(key)
        if shared is None or shared.state == "closed":
            shared = _shared[key] = SharedConnection(url, token)
        return shared


def existing_connections() -> list[SharedConnection]:
    """The shared connections this process made (open or not)."""
    with _shared_lock:
        return list(_shared.values())
