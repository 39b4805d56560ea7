"""Tornado handlers: the WebSocket endpoint and the REST API. Thin: the hub does the work.

Every handler uses Jupyter's authentication (``@ws_authenticated`` /
``@web.authenticated``), the Authorizer with ``auth_resource = "channels"``
(``read`` to connect or read, ``write`` to send), and Jupyter's Origin and
XSRF rules. A request carrying the kernel token is authenticated as the
kernel identity on these endpoints only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from typing import Any, cast
from urllib.parse import urlencode

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket
from tornado.iostream import StreamClosedError

from .auth import kernel_user, presented_token, token_matches
from .connection import Client, RateLimiter, TransportClosed
from .constants import (
    AUTH_RESOURCE,
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_TOPIC_PAGE,
    OVERSIZE_CLOSE_FACTOR,
    ErrorCode,
    Kind,
)
from .history.base import StoreUnavailable
from .hub import HookError, Hub
from .hub.reads import message_parts
from .message import Message
from .protocol import ProtocolError, dumps, is_topic, load_body

_HTTP_STATUS = {
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.UNMATCHED_TOPIC: 404,
    ErrorCode.UNAUTHORIZED: 403,
    ErrorCode.JOIN_REJECTED: 403,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_TOPICS: 409,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.INTERNAL_ERROR: 500,
}


class ChannelsAuthMixin:
    """Kernel-token authentication and the Authorizer check, shared by every handler."""

    auth_resource = AUTH_RESOURCE
    _kernel = False

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        handler = cast(JupyterHandler, self)
        token = handler.settings.get("jupyter_channels_kernel_token")
        presented = presented_token(
            handler.request.headers, handler.get_query_argument("token", None)
        )
        if token_matches(presented, token):
            if not handler.check_host():
                raise web.HTTPError(403)
            self._kernel = True
            user = kernel_user(handler.get_query_argument("name", None))
            handler.current_user = handler._jupyter_current_user = user
            return
        await super().prepare(*args, **kwargs)  # type: ignore[misc]

    @property
    def token_authenticated(self) -> bool:
        return self._kernel or cast(bool, super().token_authenticated)  # type: ignore[misc]

    def skip_check_origin(self) -> bool:
        return self._kernel or cast(bool, super().skip_check_origin())  # type: ignore[misc]

    @property
    def hub(self) -> Hub:
        return cast(Hub, cast(JupyterHandler, self).settings["jupyter_channels_hub"])

    @property
    def kind(self) -> Kind:
        return Kind.KERNEL if self._kernel else Kind.BROWSER

    async def authorize(self, action: str) -> bool:
        if self._kernel:
            return True
        handler = cast(JupyterHandler, self)
        return bool(
            await ensure_async(
                handler.authorizer.is_authorized(
                    handler, handler.current_user, action, AUTH_RESOURCE
                )
            )
        )


class _StreamTransport:
    """Writes pre-framed bytes straight to the WebSocket's stream."""

    __slots__ = ("handler",)

    def __init__(self, handler: ChannelsWebSocket) -> None:
        self.handler = handler

    def write(self, chunks: list[bytes]) -> asyncio.Future[Any] | None:
        conn = self.handler.ws_connection
        if conn is None or conn.is_closing():
            raise TransportClosed
        stream = conn.stream
        if stream is None:
            raise TransportClosed
        try:
            written = None
            for chunk in chunks:
                written = stream.write(chunk)
            return cast("asyncio.Future[Any] | None", written)
        except StreamClosedError:
            raise TransportClosed from None

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


class ChannelsWebSocket(
    ChannelsAuthMixin,
    WebSocketMixin,
    ExtensionHandlerMixin,
    JupyterHandler,
    websocket.WebSocketHandler,
):
    """``{base_url}api/channels/websocket``: one connection, any number of topics."""

    client: Client | None = None
    _can_write = False

    @property
    def max_message_size(self) -> int:
        # Tornado closes the connection with 1009 past this; below it the hub answers too_large.
        return OVERSIZE_CLOSE_FACTOR * self.hub.limits.max_message_size

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not await self.authorize("read"):
            raise web.HTTPError(403)
        self._can_write = await self.authorize("write")
        await self.hub.ensure_started()
        result = super().get(*args, **kwargs)
        if result is not None:
            await result

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Writes are already coalesced per loop turn (connection.py): send them at once.
        self.set_nodelay(True)
        self.client = self.hub.connect(
            uuid.uuid4().hex[:16],
            self.current_user,
            self.kind,
            _StreamTransport(self),
            can_write=self._can_write,
        )
        self.log.debug("channels: %r connected", self.client)

    async def on_message(self, message: str | bytes) -> None:
        client = self.client
        if client is None or client.closed:
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
            self.log.debug(
                "channels: %r disconnected (%s %s)", self.client, self.close_code, self.close_reason
            )
            self.client.lost()


#: ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses.
_DIGITS = re.compile(r"[0-9]{1,30}")

_STATUS_REASON = {
    400: ErrorCode.INVALID_MESSAGE,
    403: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.UNMATCHED_TOPIC,
    413: ErrorCode.TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}


class ChannelsAPIHandler(ChannelsAuthMixin, ExtensionHandlerMixin, APIHandler):
    """Base of the REST handlers: JSON errors as ``{"reason", "detail"}``."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised as ``HTTPError`` (authentication included) in the same shape."""
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        detail = getattr(error, "log_message", None) or self._reason
        reason = _STATUS_REASON.get(status_code, ErrorCode.INTERNAL_ERROR)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps({"reason": reason.value, "detail": detail}))

    def fail(self, code: ErrorCode, detail: str) -> None:
        self.set_status(_HTTP_STATUS.get(code, 400))
        self.finish(dumps({"reason": code.value, "detail": detail}))

    async def require(self, action: str) -> None:
        if not await self.authorize(action):
            raise web.HTTPError(403, f"not authorized to {action} channels")
        await self.hub.ensure_started()

    def topic_arg(self, topic: str) -> str | None:
        if not is_topic(topic):
            self.fail(ErrorCode.INVALID_MESSAGE, f"invalid topic {topic!r}")
            return None
        return topic

    def check_xsrf_cookie(self) -> None:
        # A request that carries no valid credentials (a wrong token, no cookie) is told
        # that, not what an XSRF check wants: it was never going to pass @authenticated.
        if getattr(self, "_jupyter_current_user", "unset") is None:
            raise web.HTTPError(403, "not authenticated: a valid token or login is required")
        super().check_xsrf_cookie()

    def int_arg(self, name: str) -> int | None:
        """A non-negative integer query argument; anything else is answered here with
        400 ``invalid_message`` (through ``fail``, so the URI, which may hold a token,
        never reaches Tornado's error log)."""
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        if not _DIGITS.fullmatch(raw):
            self.fail(ErrorCode.INVALID_MESSAGE, f"{name!r} must be a non-negative integer")
            raise web.Finish
        return int(raw)


class TopicsHandler(ChannelsAPIHandler):
    """``GET topics``: topics with members or history."""

    @web.authenticated
    async def get(self) -> None:
        await self.require("read")
        after = self.get_query_argument("after", None) or None
        limit = self.int_arg("limit")
        limit = MAX_TOPIC_PAGE if limit is None else min(limit, MAX_TOPIC_PAGE)
        try:
            topics, more = await self.hub.topic_list(after=after, limit=limit)
        except StoreUnavailable as e:
            self.fail(ErrorCode.UNAVAILABLE, str(e))
            return
        if more and topics:
            # The list keeps its shape; the next page is a link, as GitHub's API pages.
            query = urlencode({"after": topics[-1]["topic"], "limit": limit})
            self.set_header("Link", f'<{self.request.path}?{query}>; rel="next"')
        self.finish(dumps(topics))


class MessagesHandler(ChannelsAPIHandler):
    """``GET``/``POST topics/{topic}/messages``."""

    @web.authenticated
    async def get(self, topic: str) -> None:
        await self.require("read")
        if self.topic_arg(topic) is None:
            return
        limit = self.int_arg("limit")
        since = self.int_arg("since")
        if limit is None:
            limit = DEFAULT_HISTORY_LIMIT if since is None else MAX_HISTORY_LIMIT
        try:
            page = await self.hub.broker.read(
                topic,
                since=since,
                before=self.int_arg("before"),
                limit=min(limit, MAX_HISTORY_LIMIT),
            )
        except StoreUnavailable as e:
            self.fail(ErrorCode.UNAVAILABLE, str(e))
            return
        truncated = ',"truncated":true' if page.truncated else ""
        tail = (
            f'],"offset":{page.offset},"epoch":{dumps(page.epoch)},'
            f'"recovered":{"true" if page.recovered else "false"}{truncated}}}'
        )
        self.finish_parts([b'{"messages":[', *message_parts(page), tail.encode()])

    def finish_parts(self, parts: list[bytes]) -> None:
        """Answer with ``parts`` one after the other, each handed to the socket as it is:
        a page of big messages is never joined into one more copy of itself."""
        self.set_header("Content-Type", "application/json")
        # A known length also keeps Tornado from framing (copying) each part as a chunk.
        self.set_header("Content-Length", sum(len(part) for part in parts))
        for part in parts:
            # One part per flush: Tornado joins what is buffered, and one part needs no join.
            self.write(part)
            self.flush()
        self.finish()

    @web.authenticated
    async def post(self, topic: str) -> None:
        if not await self.authorize("write"):
            self.fail(ErrorCode.UNAUTHORIZED, "not authorized to write to channels")
            return
        await self.hub.ensure_started()
        if self.topic_arg(topic) is None:
            return
        if len(self.request.body) > self.hub.limits.max_message_size:
            self.fail(ErrorCode.TOO_LARGE, "body is over max_message_size")
            return
        try:
            body = load_body(self.request.body or b"null")
        except ProtocolError as e:
            self.fail(e.code, e.detail)
            return
        if not isinstance(body, dict):
            self.fail(ErrorCode.INVALID_MESSAGE, 'body must be {"subject": ..., "payload": ...}')
            return
        subject = body.get("subject")
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            self.fail(ErrorCode.INVALID_MESSAGE, "'subject' must be a string of 1-255 characters")
            return
        if not self.hub.rest_allowed(self.current_user.username):
            self.fail(ErrorCode.RATE_LIMITED, "rate limit exceeded")
            return
        channel = self.hub.router.match(topic)
        if channel is None:
            self.fail(ErrorCode.UNMATCHED_TOPIC, f"no channel serves {topic!r}")
            return
        client = Client(
            "rest-" + uuid.uuid4().hex[:12],
            self.current_user,
            self.kind,
            _NoTransport(),
            max_queued_bytes=self.hub.limits.max_queued_bytes,
            rate_limiter=RateLimiter(0, 0),
        )
        try:
            response = await self.hub.handle_message(
                channel, client, Message(topic, subject, body.get("payload", {}))
            )
        except HookError as e:
            self.fail(e.code, e.detail)
            return
        self.finish(dumps(response))


class _NoTransport:
    """A REST request's client has no socket: pushes to it go nowhere."""

    def write(self, chunks: list[bytes]) -> None:
        return None

    def close(self, code: int, reason: str) -> None:
        return None

    def ping(self) -> None:
        return None


class PresenceHandler(ChannelsAPIHandler):
    """``GET topics/{topic}/presence``: the ``presence_state`` payload."""

    @web.authenticated
    async def get(self, topic: str) -> None:
        await self.require("read")
        if self.topic_arg(topic) is None:
            return
        try:
            presence = await self.hub.topic_presence(topic)
        except StoreUnavailable as e:
            self.fail(ErrorCode.UNAVAILABLE, str(e))
            return
        self.finish(dumps(presence))


def handlers() -> list[tuple[str, type[JupyterHandler]]]:
    """URL patterns below ``base_url`` (``{topic}`` may hold ``/``; URL-encoded or raw)."""
    return [
        (r"/api/channels/websocket", ChannelsWebSocket),
        (r"/api/channels/topics", TopicsHandler),
        (r"/api/channels/topics/(?P<topic>.+)/messages", MessagesHandler),
        (r"/api/channels/topics/(?P<topic>.+)/presence", PresenceHandler),
    ]
