"""The service's edge: the endpoints of ``socket.py`` and ``rest.py`` behind the
service's own authentication (``jupyter channels serve``).

Every request is authenticated by the service's authenticator: the tokens
file (``auth/tokens.py``) or, under JupyterHub, the hub (``auth/hub.py``);
nothing else is accepted, and the identity is the authenticator's. A browser
(a request with an ``Origin``) is accepted from the service's own origin and
from ``ChannelsService.allow_origins``; other clients send no ``Origin``. The
``kind`` of a connection is ``browser`` when it came with an ``Origin``, else
``kernel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from tornado import web, websocket

from ..auth.tokens import TokensFile, presented_token
from ..constants import Kind
from ..hub import Hub
from .rest import REST_PATTERNS, WS_PATTERN, MessagesEdge, PresenceEdge, RestEdge, TopicsEdge
from .socket import SocketEdge

if TYPE_CHECKING:
    from ..auth.tokens import TokenUser


class Authenticator(Protocol):
    """Who a request is: ``None`` when it proves nothing; ``HTTPError`` for a refusal
    that should say more than "not authenticated"."""

    async def identify(self, handler: web.RequestHandler) -> TokenUser | None: ...


class TokensAuth:
    """The tokens file: the request's token is its identity."""

    def __init__(self, tokens: TokensFile) -> None:
        self.tokens = tokens

    async def identify(self, handler: web.RequestHandler) -> TokenUser | None:
        return self.tokens.identify(
            presented_token(handler.request.headers, handler.get_query_argument("token", None))
        )


class ServiceAuthMixin:
    """The request's identity, from the service's authenticator, set before the handler runs."""

    async def prepare(self) -> None:
        handler = cast(web.RequestHandler, self)
        auth = cast(Authenticator, handler.settings["jupyter_channels_auth"])
        handler.current_user = await auth.identify(handler)

    @property
    def hub(self) -> Hub:
        return cast(Hub, cast(web.RequestHandler, self).settings["jupyter_channels_hub"])

    @property
    def kind(self) -> Kind:
        has_origin = "Origin" in cast(web.RequestHandler, self).request.headers
        return Kind.BROWSER if has_origin else Kind.KERNEL

    async def authorize(self, action: str) -> bool:
        # Which topics an identity may join or send to is the hub's permissions' to say.
        return True

    def _request_summary(self) -> str:
        # Tornado's access and error log lines name the URI: never with its token.
        request = cast(web.RequestHandler, self).request
        return f"{request.method} {scrub_token(request.uri or '')} ({request.remote_ip})"


def scrub_token(uri: str) -> str:
    """``uri`` with the value of any ``token`` query argument hidden."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = [
        "token=[secret]" if part.split("=", 1)[0] == "token" else part for part in query.split("&")
    ]
    return path + "?" + "&".join(parts)


def origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    """A browser's ``Origin``: the service's own, or one of ``allow_origins`` (``*``: any)."""
    if "*" in allowed or origin in allowed:
        return True
    netloc = origin.partition("://")[2]
    return bool(host) and netloc.lower() == (host or "").lower()


class ServiceSocket(SocketEdge, ServiceAuthMixin, websocket.WebSocketHandler):
    """``{base}api/channels/websocket``."""

    def check_origin(self, origin: str) -> bool:
        """The service's own Origin rule (it has no Jupyter server to take one from)."""
        allowed = cast(list[str], self.settings["jupyter_channels_allow_origins"])
        return origin_allowed(origin, self.request.headers.get("Host"), allowed)


class ServiceAPIHandler(ServiceAuthMixin, web.RequestHandler):
    """Base of the service's REST handlers."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.current_user is None:
            # Without a login page to send anyone to: refused, never redirected.
            raise web.HTTPError(403, "not authenticated: a valid token is required")
        origin = self.request.headers.get("Origin")
        if origin is not None:
            allowed = cast(list[str], self.settings["jupyter_channels_allow_origins"])
            if not origin_allowed(origin, self.request.headers.get("Host"), allowed):
                raise web.HTTPError(403, f"origin {origin!r} is not allowed")


class ServiceTopics(TopicsEdge, ServiceAPIHandler):
    """``GET topics``."""


class ServiceMessages(MessagesEdge, ServiceAPIHandler):
    """``GET``/``POST topics/{topic}/messages``."""


class ServicePresence(PresenceEdge, ServiceAPIHandler):
    """``GET topics/{topic}/presence``."""


_REST: dict[type[RestEdge], type[web.RequestHandler]] = {
    TopicsEdge: ServiceTopics,
    MessagesEdge: ServiceMessages,
    PresenceEdge: ServicePresence,
}


def handlers(base_url: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of the service below ``base_url`` (``/`` or ``/prefix/``)."""
    base = base_url.rstrip("/")
    return [
        (base + WS_PATTERN, ServiceSocket),
        *((base + pattern, _REST[edge]) for pattern, edge in REST_PATTERNS),
    ]
