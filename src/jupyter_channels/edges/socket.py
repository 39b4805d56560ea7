"""The WebSocket endpoint, for every host: one connection, any number of topics.

A host's handler mixes :class:`SocketEdge` in front of Tornado's
``WebSocketHandler`` and provides ``hub``, ``kind``, ``current_user`` and
``authorize(action)``; authentication happens before ``get`` runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tornado import httputil, web, websocket
from tornado.iostream import IOStream, StreamClosedError

from ..connection import Client, Pending, TransportClosed
from ..constants import OVERSIZE_CLOSE_FACTOR, Kind
from . import phoenix

if TYPE_CHECKING:
    from ..connection import Identity
    from ..hub import Hub

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def socket_authenticated(method: F) -> F:
    """Refuse the handshake (403) of a request no host authenticated; never a redirect."""

    @wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.current_user is None:
            log.warning("refused an unauthenticated WebSocket connection")
            raise web.HTTPError(403)
        return method(self, *args, **kwargs)

    # What Jupyter's own ws_authenticated sets: the server checks every handler has it.
    setattr(wrapper, "__allow_unauthenticated", False)
    return cast(F, wrapper)


class StreamTransport:
    """Writes pre-framed bytes straight to the WebSocket's socket.

    While the stream has nothing queued, the bytes go to the socket at once, with no
    future and no copy; what the socket does not take (a slow reader) is queued on
    the stream, which writes it when the socket can take more.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: websocket.WebSocketHandler) -> None:
        self.handler = handler

    def write(self, chunks: list[bytes]) -> Pending | None:
        conn = self.handler.ws_connection
        if conn is None or conn.is_closing():
            raise TransportClosed
        stream = conn.stream
        if stream is None or stream.closed():
            raise TransportClosed
        rest: list[bytes] = chunks
        if type(stream) is IOStream and not stream.writing():  # not TLS, nothing queued
            try:
                sent = (
                    stream.socket.sendmsg(chunks)
                    if len(chunks) > 1
                    else stream.socket.send(chunks[0])
                )
            except OSError:  # full (EAGAIN), or a failure the stream will meet and report
                sent = 0
            rest = _unsent(chunks, sent)
            if not rest:
                return None
        try:
            for chunk in rest:
                written = stream.write(chunk)
        except StreamClosedError:
            raise TransportClosed from None
        return sum(len(chunk) for chunk in rest), written

    def close(self, code: int, reason: str) -> None:
        conn = self.handler.ws_connection
        stream = conn.stream if conn is not None else None
        self.handler.close(code, reason)
        if stream is not None and stream.writing():
            # Bytes are still queued (a slow consumer): the close frame waits behind them
            # and Tornado would hold them for its 5 s close handshake. Abort now, so
            # the buffered data is freed at once; the client sees the socket end.
            stream.close()

    def ping(self) -> None:
        # A closed socket is already being handled by on_close.
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.handler.ping()


def _unsent(chunks: list[bytes], sent: int) -> list[bytes]:
    """What is left of ``chunks`` after the first ``sent`` bytes."""
    for i, chunk in enumerate(chunks):
        if sent < len(chunk):
            return [memoryview(chunk)[sent:] if sent else chunk, *chunks[i + 1 :]]  # type: ignore[list-item]
        sent -= len(chunk)
    return []


class _Connection:
    """What a handler keeps of its connection, in one attribute: a Tornado handler's
    instance dict shares its keys with the other handlers' up to 29 of them, and one
    more attribute turns it into a dict of its own (about 1.3 KB per connection)."""

    __slots__ = ("can_write", "client", "upgraded")

    def __init__(self, can_write: bool) -> None:
        self.can_write = can_write
        self.client: Client | None = None
        #: The handshake is over: the handler's HTTP methods refuse (:func:`_http_only`).
        self.upgraded = False


#: The headers of every handler once upgraded (request and response): one empty set, shared.
_NO_HEADERS = httputil.HTTPHeaders()


class SocketEdge:
    """What a host's WebSocket handler does once the request is authenticated."""

    _connection: _Connection | None = None

    @property
    def client(self) -> Client | None:
        connection = self._connection
        return connection.client if connection is not None else None

    # Provided by the host's handler.
    hub: Hub
    kind: Kind
    current_user: Identity

    if TYPE_CHECKING:

        async def authorize(self, action: str) -> bool:
            """Whether the request may ``read`` or ``write`` channels (the host's rules)."""

    @property
    def ping_interval(self) -> float:
        # The hub pings every connection (heartbeat_interval, idle_timeout): no ping task
        # per connection (Jupyter's setting is in ms, which Tornado would read as seconds).
        return 0

    @property
    def max_message_size(self) -> int:
        # Tornado closes the connection with 1009 past this; below it the hub answers too_large.
        return OVERSIZE_CLOSE_FACTOR * self.hub.limits.max_message_size

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # Checked here, after the host's authentication, so that ``get`` returns Tornado's
        # own coroutine: no coroutine of ours held for the connection's life.
        await super().prepare(*args, **kwargs)  # type: ignore[misc]
        if self.current_user is None or cast(web.RequestHandler, self)._finished:
            return  # ``get`` refuses it (403), or the host already answered
        if not await self.authorize("read"):
            raise web.HTTPError(403)
        vsn = self._vsn()
        if vsn not in (None, phoenix.VSN):
            raise web.HTTPError(400, f"unsupported vsn {vsn!r}: {phoenix.VSN} or none")
        self._connection = _Connection(await self.authorize("write"))
        await self.hub.ensure_started()

    @socket_authenticated
    def get(self, *args: Any, **kwargs: Any) -> Any:
        return super().get(*args, **kwargs)  # type: ignore[misc]

    def _vsn(self) -> str | None:
        """The serializer asked for: ``2.0.0`` (Phoenix V2), or ``None`` (native)."""
        return cast(web.RequestHandler, self).get_query_argument("vsn", None)

    def open(self, *args: Any, **kwargs: Any) -> None:
        handler = cast(websocket.WebSocketHandler, self)
        # Writes are already coalesced per loop turn (connection.py): send them at once.
        handler.set_nodelay(True)
        connection = self._connection
        if connection is None:
            connection = self._connection = _Connection(False)
        connection.client = self.hub.connect(
            uuid.uuid4().hex[:16],
            self.current_user,
            self.kind,
            StreamTransport(handler),
            can_write=connection.can_write,
            client_type=phoenix.PhoenixClient if self._vsn() == phoenix.VSN else Client,
        )
        log.debug("%r connected", self.client)
        self._drop_handshake()

    def _detach_stream(self) -> IOStream:
        # Tornado's sets seven methods that refuse on the instance: seven more keys, past
        # the 30 an instance dict shares with the class's others, and a dict of its own
        # (1.3 KB) for every connection. The class's methods refuse instead (_http_only).
        connection = self._connection
        if connection is None:
            connection = self._connection = _Connection(False)
        connection.upgraded = True
        return cast(web.RequestHandler, self).detach()

    def _drop_handshake(self) -> None:
        """Let go of what only the handshake needed: the request's headers and cookies,
        the response's headers and the cookie a host set on it. The request line, the
        peer's address and the query arguments stay (the log, the edges)."""
        handler = cast(web.RequestHandler, self)
        request = handler.request
        # Cleared in place: Tornado's handshake coroutine holds them to the end, too.
        request.headers.clear()
        request.headers = _NO_HEADERS
        request.__dict__.pop("_cookies", None)
        handler._headers = _NO_HEADERS
        handler.__dict__.pop("_new_cookie", None)

    async def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        if isinstance(client, phoenix.PhoenixClient):
            await phoenix.receive(self.hub, client, message)
            return
        if isinstance(message, bytes):
            self.hub.receive_binary(client)
            return
        await self.hub.receive(client, message)

    def on_pong(self, data: bytes) -> None:
        if self.client is not None:
            self.client.last_seen = time.monotonic()

    def on_close(self) -> None:
        if self.client is not None:
            handler = cast(websocket.WebSocketHandler, self)
            log.debug(
                "%r disconnected (%s %s)", self.client, handler.close_code, handler.close_reason
            )
            self.client.lost()


def _http_only(name: str) -> Callable[..., Any]:
    """``RequestHandler.<name>``, refused once the handshake is over (as Tornado does)."""

    def method(self: SocketEdge, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if connection is not None and connection.upgraded:
            raise RuntimeError("Method not supported for Web Sockets")
        return getattr(super(SocketEdge, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


# Tornado's seven, and the two that would change the shared empty headers.
for _name in (
    "write", "redirect", "set_header", "set_cookie", "set_status", "flush", "finish",
    "add_header", "clear_header",
):  # fmt: skip
    setattr(SocketEdge, _name, _http_only(_name))
