"""The asyncio client: one WebSocket, any number of topics, reconnecting by itself.

::

    async with jupyter_channels.aconnect() as conn:
        room = await conn.join("chat:lobby", history=20)
        await room.send("text", {"text": "hi"})
        async for message in room:
            print(message.payload)

After a dropped connection it reconnects with exponential backoff and jitter
and rejoins every topic with ``since`` = the last offset it saw, so nothing the
server retained is missed and nothing is delivered twice (messages are
deduplicated by offset). Requests made while disconnected wait in a bounded
buffer, each with its own timeout.

A rejoin the server cannot answer now (``unavailable``, ``timeout``,
``rate_limited``, or no reply) is tried again with backoff, keeping ``since``;
any other error ends that subscription. A join reply that says ``truncated``
(the server bounds replies by bytes) is completed with ``history`` pages. The
backoff only starts over once every rejoin of a connection was answered, so a
join that keeps getting the connection closed (4008, slow consumer) never makes
a tight loop; after :data:`MAX_JOIN_CLOSES` such closes that topic is given up.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import random
from collections.abc import Awaitable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from ..constants import MAX_HISTORY_LIMIT, PING_TEXT, CloseCode, ErrorCode, Event, Status
from ..protocol import JSON, dumps
from .discovery import resolve
from .errors import ChannelError, ConnectionLost, ReplyTimeout, error_for
from .subscription import AsyncSubscription, Callback

__all__ = ["AsyncConnection", "AsyncSubscription", "Callback", "aconnect"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
#: Received messages each subscription keeps in ``messages``.
MAX_MESSAGES = 1000
#: Requests held while disconnected before ``send`` refuses more.
MAX_BUFFERED = 1000
#: The first reconnect or rejoin retry waits about this long (s); each failure doubles it.
BASE_BACKOFF = 0.1
#: Closes "slow consumer" while only this topic's join was waiting, before it is given up.
MAX_JOIN_CLOSES = 2


class AsyncConnection:
    """One WebSocket connection to the channels endpoint.

    ``url`` is the endpoint or a server's http(s) URL; with neither ``url`` nor
    ``token`` they are discovered (see ``discovery.py``). ``timeout`` is the
    default for every request.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect: bool = True,
        max_backoff: float = 10.0,
        max_messages: int = MAX_MESSAGES,
        max_buffered: int = MAX_BUFFERED,
        heartbeat_interval: float = 30.0,
    ) -> None:
        endpoint = resolve(url, token)
        self.url = endpoint.url
        self.token = endpoint.token
        self.name = name or _session_name()
        self.timeout = timeout
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.max_messages = max_messages
        self.max_buffered = max_buffered
        self.heartbeat_interval = heartbeat_interval
        #: ``connecting``, ``connected``, ``reconnecting`` or ``closed``.
        self.state = "connecting"
        self.subscriptions: dict[str, AsyncSubscription] = {}
        self._ws: WebSocketClientConnection | None = None
        self._refs = itertools.count(1)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._buffer: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        #: Reconnect attempts since the last connection whose rejoins were all answered.
        self._attempt = 0
        #: The close code of the last lost connection (``None``: no close frame).
        self._close_code: int | None = None

    def __repr__(self) -> str:
        return f"<AsyncConnection {self.url} {self.state}>"

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> AsyncConnection:
        """Connect (once); raises :class:`ChannelError` if the server refuses."""
        # Only the first time: while reconnecting, the reconnect task owns the socket.
        if self._ws is None and self.state == "connecting":
            self._ws = await self._connect()
            self._started(self._ws)
        return self

    async def __aenter__(self) -> AsyncConnection:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; pending requests fail with :class:`ConnectionLost`."""
        self._closing = True
        self.state = "closed"
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending("the connection was closed")
        for sub in list(self.subscriptions.values()):
            sub._ended("the connection was closed")
        self.subscriptions.clear()

    async def _connect(self) -> WebSocketClientConnection:
        parts = urlsplit(self.url)
        query = parts.query
        if self.name:
            query = (query + "&" if query else "") + urlencode({"name": self.name})
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        request = HTTPRequest(url, headers=headers, connect_timeout=self.timeout)
        try:
            return await websocket_connect(request)
        except HTTPClientError as e:
            raise ChannelError(
                "unauthorized" if e.code == 403 else "unavailable",
                f"{self.url} refused the connection: HTTP {e.code}",
            ) from None
        except OSError as e:
            raise ConnectionLost("unavailable", f"cannot connect to {self.url}: {e}") from None

    def _started(self, ws: WebSocketClientConnection) -> None:
        self.state = "connected"
        self._spawn(self._read(ws))
        if self.heartbeat_interval > 0:
            self._spawn(self._heartbeat(ws))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, ws: WebSocketClientConnection) -> None:
        while True:
            text = await ws.read_message()
            if text is None:
                break
            if text == PING_TEXT or isinstance(text, bytes):
                continue
            try:
                self._dispatch(json.loads(text))
            except Exception:
                log.exception("could not handle frame %.200s", text)
        if ws is self._ws:
            self._close_code = ws.close_code
            self._lost(f"closed by the server ({ws.close_code} {ws.close_reason})")

    async def _heartbeat(self, ws: WebSocketClientConnection) -> None:
        while ws is self._ws:
            await asyncio.sleep(self.heartbeat_interval)
            if ws is not self._ws:
                return
            try:
                await self.request({"event": Event.HEARTBEAT.value})
            except ChannelError as e:
                log.info("heartbeat failed (%s); reconnecting", e)
                ws.close()

    def _lost(self, why: str) -> None:
        self._ws = None
        self._fail_pending(why)
        if self._closing or not self.reconnect:
            self.state = "closed"
            for sub in list(self.subscriptions.values()):
                sub._ended(why)
            return
        log.info("connection to %s lost: %s; reconnecting", self.url, why)
        self.state = "reconnecting"
        for sub in self.subscriptions.values():
            if sub._confirmed:
                sub.state = "rejoining"
        self._spawn(self._reconnect())

    def _fail_pending(self, why: str) -> None:
        replies, self._replies = self._replies, {}
        for ref, future in replies.items():
            if ref in self._buffer:
                self._replies[ref] = future  # not sent yet: it waits for the reconnect
            elif not future.done():
                future.set_exception(ConnectionLost("unavailable", why))

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt`` (from 0): doubling, capped, jittered
        between half and all of it so that clients do not come back in lockstep."""
        return min(self.max_backoff, BASE_BACKOFF * 2.0**attempt) * random.uniform(0.5, 1.0)

    async def _reconnect(self) -> None:
        # The attempt count survives connections that were lost before their rejoins
        # were answered: a join that gets the connection closed must not loop fast.
        while True:
            await asyncio.sleep(self._backoff(self._attempt))
            self._attempt += 1
            if self._closing:
                return
            try:
                ws = await self._connect()
            except ChannelError as e:
                if e.code == ErrorCode.UNAUTHORIZED.value:
                    # Retrying cannot help (e.g. a kernel token from before a server
                    # restart): end everything so callers hear of it.
                    log.warning("reconnecting to %s was refused: %s", self.url, e.detail)
                    self._refused(e)
                    return
                log.debug("reconnect attempt %d failed: %s", self._attempt, e)
                continue
            self._ws = ws
            self._close_code = None
            self._started(ws)
            if await self._rejoin():
                self._attempt = 0
            self._flush_buffer()
            log.info("reconnected to %s", self.url)
            return

    def _refused(self, error: ChannelError) -> None:
        self.state = "closed"
        self._buffer.clear()
        replies, self._replies = self._replies, {}
        for future in replies.values():
            if not future.done():
                future.set_exception(ChannelError(error.code, error.detail))
        for sub in list(self.subscriptions.values()):
            sub._ended(error.detail)
        self.subscriptions.clear()

    async def _rejoin(self) -> bool:
        """Rejoin every confirmed subscription, one at a time (so a reply that gets the
        connection closed names its topic); False if the connection was lost meanwhile."""
        ws = self._ws
        for sub in list(self.subscriptions.values()):
            if not sub._confirmed or self.subscriptions.get(sub.topic) is not sub:
                continue
            try:
                error = await self._rejoin_one(sub)
            except ConnectionLost as e:
                log.info("rejoining %s failed: %s", sub.topic, e)
                return False  # the connection is gone again; the next reconnect retries
            if error is not None and ws is not None:
                log.warning("rejoining %s failed (%s); trying again with backoff", sub.topic, error)
                self._spawn(self._retry_rejoin(sub, ws, error))
        return True

    async def _rejoin_one(self, sub: AsyncSubscription) -> ChannelError | None:
        """Rejoin ``sub`` with ``since``; the error to try again after, or None when it is
        joined or ended. Raises :class:`ConnectionLost`."""
        try:
            await self._join_request(
                sub,
                {
                    "event": Event.JOIN.value,
                    "topic": sub.topic,
                    "payload": sub.params,
                    "since": sub.last_offset,
                    "presence": sub.wants_presence,
                },
                self.timeout,
            )
        except ConnectionLost:
            if self._close_code == CloseCode.SLOW_CONSUMER:
                sub._join_closes += 1
                if sub._join_closes >= MAX_JOIN_CLOSES:
                    why = (
                        f"its join reply got the connection closed (slow consumer) "
                        f"{sub._join_closes} times"
                    )
                    log.warning("giving up on %s: %s", sub.topic, why)
                    self._forget(sub)
                    sub._ended(why)
            raise
        except ChannelError as e:
            if e.retried:
                sub.state = "retrying"
                return e
            # Refused or failed: this topic ends; the others still rejoin.
            log.warning("rejoining %s failed: %s", sub.topic, e)
            self._forget(sub)
            sub._ended(e.detail)
        return None

    async def _retry_rejoin(
        self, sub: AsyncSubscription, ws: WebSocketClientConnection, error: ChannelError
    ) -> None:
        """Rejoin ``sub`` on ``ws`` until it is joined or ended; a new connection
        rejoins it by itself, so this stops when ``ws`` is gone."""
        for attempt in itertools.count():
            wait = (
                _after(error.retry_after)
                if error.retry_after is not None
                else self._backoff(attempt)
            )
            await asyncio.sleep(wait)
            if ws is not self._ws or self.subscriptions.get(sub.topic) is not sub:
                return
            try:
                retry = await self._rejoin_one(sub)
            except ConnectionLost:
                return
            if retry is None:
                if sub.joined:
                    log.info("rejoined %s after %d retries", sub.topic, attempt + 1)
                return
            log.debug("rejoining %s failed again: %s", sub.topic, retry)
            error = retry

    async def _join_request(
        self, sub: AsyncSubscription, frame: dict[str, Any], timeout: float
    ) -> None:
        """Send a join for ``sub`` and take in its reply, with the older pages a truncated
        reply left out. Live frames that arrive meanwhile are delivered after it."""
        sub._held = []
        try:
            response = await self._send_request(frame, timeout)
            if response.get("truncated") and sub.epoch in (None, response.get("epoch")):
                response = await self._complete(sub.topic, response, frame, timeout)
            sub._joined(response)
            held = sub._held
        finally:
            sub._held = None
        for live in held:
            sub._deliver(live)

    async def _complete(
        self, topic: str, response: dict[str, Any], frame: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """A truncated join reply with what it left out. With ``since`` the reply holds the
        oldest missed messages: the newer ones are asked for by joining again with
        ``since`` = the last one received, until a reply is complete (``recovered`` stays
        true only if the pages meet). Without, it holds the newest: older ones are read
        with ``history`` pages up to the ``history`` asked for."""
        messages: list[dict[str, Any]] = list(response.get("messages", []))
        since = frame.get("since")
        if since is None:
            return {**response, "messages": await self._older(topic, messages, frame, timeout)}
        gapless = True
        while response.get("truncated") and response.get("recovered", True) and messages:
            reached = messages[-1].get("offset")
            if not isinstance(reached, int):
                break
            response = await self._send_request({**frame, "since": reached}, timeout)
            page = list(response.get("messages", []))
            if not page or page[0].get("offset") != reached + 1:
                gapless = False  # retention moved past them while we read
                break
            messages += page
        recovered = bool(response.get("recovered", True)) and gapless
        return {**response, "messages": messages, "recovered": recovered}

    async def _older(
        self,
        topic: str,
        messages: list[dict[str, Any]],
        frame: dict[str, Any],
        timeout: float,
    ) -> list[dict[str, Any]]:
        """``messages`` (the newest) preceded by older ones read with ``history`` pages,
        up to the ``history`` asked for or the oldest retained."""
        while messages and len(messages) < frame.get("history", 0):
            first = messages[0].get("offset")
            if not isinstance(first, int) or first <= 1:
                break
            limit = min(frame.get("history", 0) - len(messages), MAX_HISTORY_LIMIT)
            page = await self._send_request(
                {
                    "event": Event.HISTORY.value,
                    "topic": topic,
                    "payload": {"before": first, "limit": limit},
                },
                timeout,
            )
            older = list(page.get("messages", []))
            if not older:
                break
            messages = older + messages
        return messages

    def _flush_buffer(self) -> None:
        ws = self._ws
        while self._buffer and ws is not None:
            ref, text = self._buffer.popitem(last=False)
            self._write(ws, text, ref)

    def _write(self, ws: WebSocketClientConnection, text: str, ref: str) -> None:
        try:
            ws.write_message(text)
        except WebSocketClosedError:
            self._buffer[ref] = text
            self._buffer.move_to_end(ref, last=False)

    # -- requests ---------------------------------------------------------------------------------

    async def request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a frame with a fresh ``ref`` and return the ok reply's ``response``.

        While reconnecting the frame waits in a bounded buffer. Raises
        :class:`ChannelError` (an error reply), :class:`ReplyTimeout` or
        :class:`ConnectionLost`.
        """
        if self.state == "closed":
            raise ConnectionLost("unavailable", "the connection is closed")
        return await self._send_request(frame, self.timeout if timeout is None else timeout)

    async def _send_request(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]:
        ref = str(next(self._refs))
        text = dumps({**frame, "ref": ref})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ref] = future
        ws = self._ws
        if ws is not None and self.state == "connected":
            self._write(ws, text, ref)
        elif len(self._buffer) >= self.max_buffered:
            self._replies.pop(ref, None)
            raise ChannelError(
                "unavailable", f"disconnected, and {self.max_buffered} requests are waiting"
            )
        else:
            self._buffer[ref] = text
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ReplyTimeout("timeout", f"no reply within {timeout} s") from None
        finally:
            # A request that timed out while buffered must never be sent later.
            self._buffer.pop(ref, None)
            self._replies.pop(ref, None)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        if event == Event.REPLY.value:
            future = self._replies.get(str(frame.get("ref")))
            if future is None or future.done():
                return
            payload = frame.get("payload") or {}
            response = payload.get("response") or {}
            if payload.get("status") == Status.OK.value:
                future.set_result(response)
            else:
                retry_after = response.get("retry_after")
                future.set_exception(
                    error_for(
                        response.get("reason", "error"),
                        response.get("detail", ""),
                        retry_after / 1000 if isinstance(retry_after, int | float) else None,
                    )
                )
            return
        if event == Event.ERROR.value:
            payload = frame.get("payload") or {}
            log.warning("server error: %s %s", payload.get("reason"), payload.get("detail"))
            return
        sub = self.subscriptions.get(frame.get("topic", ""))
        if sub is None:
            return
        if event == Event.MESSAGE.value:
            sub._receive(frame)
        elif event == Event.PRESENCE_STATE.value:
            sub._presence_state(frame.get("payload") or {})
        elif event == Event.PRESENCE_DIFF.value:
            sub._presence_diff(frame.get("payload") or {})
        elif event == Event.CLOSE.value:
            self._forget(sub)
            sub._ended((frame.get("payload") or {}).get("reason"))

    # -- topics -----------------------------------------------------------------------------------

    async def join(
        self,
        topic: str,
        *,
        history: int = 0,
        since: int | None = None,
        params: dict[str, JSON] | None = None,
        presence: bool = True,
        timeout: float | None = None,
    ) -> AsyncSubscription:
        """Join ``topic`` (once per connection: joining again returns the same subscription).

        The newest ``history`` messages, or every retained one after ``since``,
        are in ``messages`` on return; callbacks see what arrives after. Raises
        :class:`JoinRejected` if the channel refuses.
        """
        await self.open()
        existing = self.subscriptions.get(topic)
        if existing is not None:
            return existing
        sub = AsyncSubscription(self, topic, params or {}, self.max_messages)
        sub.wants_presence = presence
        frame: dict[str, Any] = {"event": Event.JOIN.value, "topic": topic, "payload": sub.params}
        if not presence:
            frame["presence"] = False
        if since is not None:
            frame["since"] = since
        elif history:
            frame["history"] = history
        # Registered first: presence_state and live messages follow the reply at once.
        self.subscriptions[topic] = sub
        try:
            while True:
                if self.state == "closed":
                    raise ConnectionLost("unavailable", "the connection is closed")
                try:
                    await self._join_request(
                        sub, frame, self.timeout if timeout is None else timeout
                    )
                    break
                except ChannelError as e:
                    # The server is admitting joins at its rate and said when to come back.
                    if e.code != ErrorCode.UNAVAILABLE.value or e.retry_after is None:
                        raise
                    sub.state = "retrying"
                    await asyncio.sleep(_after(e.retry_after))
        except ChannelError:
            self.subscriptions.pop(topic, None)
            raise
        return sub

    def _forget(self, sub: AsyncSubscription) -> None:
        if self.subscriptions.get(sub.topic) is sub:
            del self.subscriptions[sub.topic]
        sub._ended(None)


def _after(retry_after: float) -> float:
    """Seconds to wait when the server asked for ``retry_after``: that, and up to a quarter
    more, so that the clients it turned away together do not come back together."""
    return retry_after * random.uniform(1.0, 1.25)


def _session_name() -> str | None:
    """The notebook a kernel runs for (``JPY_SESSION_NAME``, set by Jupyter Server)."""
    path = os.environ.get("JPY_SESSION_NAME")
    return os.path.basename(path) if path else None


def aconnect(url: str | None = None, token: str | None = None, **options: Any) -> AsyncConnection:
    """An :class:`AsyncConnection` (use ``async with``, or ``await conn.open()``)."""
    return AsyncConnection(url, token, **options)
