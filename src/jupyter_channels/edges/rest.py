"""The REST API under ``{base}api/channels/``, for every host.

A host's handlers mix these in front of a Tornado ``RequestHandler`` and
provide ``hub``, ``kind``, ``current_user`` and ``authorize(action)``.
Errors are JSON ``{"reason", "detail"}`` with the protocol's error codes.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from tornado import web

from ..connection import Client, RateLimiter
from ..constants import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_TOPIC_PAGE,
    ErrorCode,
    Kind,
)
from ..history.base import StoreUnavailable
from ..hub import HookError
from ..hub.permissions import Action
from ..hub.reads import message_parts, reply_budget
from ..message import Message
from ..protocol import ProtocolError, dumps, is_topic, load_body

if TYPE_CHECKING:
    from ..connection import Identity
    from ..hub import Hub

HTTP_STATUS = {
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

_STATUS_REASON = {
    400: ErrorCode.INVALID_MESSAGE,
    403: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.UNMATCHED_TOPIC,
    413: ErrorCode.TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}

#: ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses.
_DIGITS = re.compile(r"[0-9]{1,30}")


class RestEdge:
    """Shared by every REST handler: the error shape and argument checks."""

    # Provided by the host's handler.
    hub: Hub
    kind: Kind
    current_user: Identity

    if TYPE_CHECKING:

        async def authorize(self, action: str) -> bool:
            """Whether the request may ``read`` or ``write`` channels (the host's rules)."""

    @property
    def _handler(self) -> web.RequestHandler:
        return cast(web.RequestHandler, self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors raised as ``HTTPError`` (authentication included) in the same shape."""
        handler = self._handler
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        detail = getattr(error, "log_message", None) or handler._reason
        reason = _STATUS_REASON.get(status_code, ErrorCode.INTERNAL_ERROR)
        handler.set_header("Content-Type", "application/json")
        handler.finish(dumps({"reason": reason.value, "detail": detail}))

    def fail(self, code: ErrorCode, detail: str) -> None:
        handler = self._handler
        handler.set_status(HTTP_STATUS.get(code, 400))
        handler.set_header("Content-Type", "application/json")
        handler.finish(dumps({"reason": code.value, "detail": detail}))

    async def require(self, action: str) -> None:
        if not await self.authorize(action):
            raise web.HTTPError(403, f"not authorized to {action} channels")
        await self.hub.ensure_started()

    def permitted(self, action: Action, topic: str) -> bool:
        """Whether the topic's permissions let the requesting user ``action`` it; when
        not, answered here with 403 ``unauthorized`` naming the rule."""
        refusal = self.hub.permissions.refusal(self.current_user, action, topic)
        if refusal is not None:
            self.fail(ErrorCode.UNAUTHORIZED, refusal)
            return False
        return True

    def topic_arg(self, topic: str) -> str | None:
        if not is_topic(topic):
            self.fail(ErrorCode.INVALID_MESSAGE, f"invalid topic {topic!r}")
            return None
        return topic

    def int_arg(self, name: str) -> int | None:
        """A non-negative integer query argument; anything else is answered here with
        400 ``invalid_message`` (through ``fail``, so the URI, which may hold a token,
        never reaches Tornado's error log)."""
        raw = self._handler.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        if not _DIGITS.fullmatch(raw):
            self.fail(ErrorCode.INVALID_MESSAGE, f"{name!r} must be a non-negative integer")
            raise web.Finish
        return int(raw)

    def finish_parts(self, parts: list[bytes]) -> None:
        """Answer with ``parts`` one after the other, each handed to the socket as it is:
        a page of big messages is never joined into one more copy of itself."""
        handler = self._handler
        handler.set_header("Content-Type", "application/json")
        # A known length also keeps Tornado from framing (copying) each part as a chunk.
        handler.set_header("Content-Length", sum(len(part) for part in parts))
        for part in parts:
            # One part per flush: Tornado joins what is buffered, and one part needs no join.
            handler.write(part)
            handler.flush()
        handler.finish()


class TopicsEdge(RestEdge):
    """``GET topics``: topics with members or history that the user may join."""

    @web.authenticated
    async def get(self) -> None:
        await self.require("read")
        handler = self._handler
        after = handler.get_query_argument("after", None) or None
        limit = self.int_arg("limit")
        limit = MAX_TOPIC_PAGE if limit is None else min(limit, MAX_TOPIC_PAGE)
        permissions, user = self.hub.permissions, self.current_user
        visible = None
        if permissions.rules is not None:
            # A private topic's name is not listed to those who may not join it.
            def visible(topic: str) -> bool:
                return permissions.decide(user, Action.JOIN, topic).allowed

        try:
            topics, more = await self.hub.topic_list(after=after, limit=limit, visible=visible)
        except StoreUnavailable as e:
            self.fail(ErrorCode.UNAVAILABLE, str(e))
            return
        if more and topics:
            # The list keeps its shape; the next page is a link, as GitHub's API pages.
            query = urlencode({"after": topics[-1]["topic"], "limit": limit})
            handler.set_header("Link", f'<{handler.request.path}?{query}>; rel="next"')
        handler.set_header("Content-Type", "application/json")
        handler.finish(dumps(topics))


class MessagesEdge(RestEdge):
    """``GET``/``POST topics/{topic}/messages``.

    A POST goes through the same checks as a ``message`` frame (permissions, mutes,
    ``edit``/``delete``/``mute``), then the channel's ``handle_message``; with
    ``"ephemeral": true`` it reaches the topic's current subscribers unstored.
    """

    @web.authenticated
    async def get(self, topic: str) -> None:
        await self.require("read")
        if self.topic_arg(topic) is None or not self.permitted(Action.JOIN, topic):
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
                # As a WebSocket reply: a page of big messages stays small, and Redis
                # answers it well within its socket timeout.
                max_bytes=reply_budget(self.hub.limits),
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

    @web.authenticated
    async def post(self, topic: str) -> None:
        if not await self.authorize("write"):
            self.fail(ErrorCode.UNAUTHORIZED, "not authorized to write to channels")
            return
        await self.hub.ensure_started()
        if self.topic_arg(topic) is None:
            return
        body_bytes = self._handler.request.body
        if len(body_bytes) > self.hub.limits.max_message_size:
            self.fail(ErrorCode.TOO_LARGE, "body is over max_message_size")
            return
        try:
            body = load_body(body_bytes or b"null")
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
        ephemeral = body.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            self.fail(ErrorCode.INVALID_MESSAGE, "'ephemeral' must be true or false")
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
                channel,
                client,
                Message(topic, subject, body.get("payload", {}), ephemeral=ephemeral),
            )
        except HookError as e:
            self.fail(e.code, e.detail)
            return
        self._handler.set_header("Content-Type", "application/json")
        self._handler.finish(dumps(response))


class _NoTransport:
    """A REST request's client has no socket: pushes to it go nowhere."""

    def write(self, chunks: list[bytes]) -> None:
        return None

    def close(self, code: int, reason: str) -> None:
        return None

    def ping(self) -> None:
        return None


class PresenceEdge(RestEdge):
    """``GET topics/{topic}/presence``: the ``presence_state`` payload."""

    @web.authenticated
    async def get(self, topic: str) -> None:
        await self.require("read")
        if self.topic_arg(topic) is None or not self.permitted(Action.JOIN, topic):
            return
        try:
            presence = await self.hub.topic_presence(topic)
        except StoreUnavailable as e:
            self.fail(ErrorCode.UNAVAILABLE, str(e))
            return
        self._handler.set_header("Content-Type", "application/json")
        self._handler.finish(dumps(presence))


#: URL patterns below the base URL (``{topic}`` may hold ``/``; URL-encoded or raw), by edge.
WS_PATTERN = r"/api/channels/websocket"
REST_PATTERNS: list[tuple[str, type[RestEdge]]] = [
    (r"/api/channels/topics", TopicsEdge),
    (r"/api/channels/topics/(?P<topic>.+)/messages", MessagesEdge),
    (r"/api/channels/topics/(?P<topic>.+)/presence", PresenceEdge),
]
