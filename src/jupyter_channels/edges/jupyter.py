"""The server extension's edge: the endpoints of ``socket.py`` and ``rest.py`` behind
Jupyter's authentication.

Every handler uses Jupyter's authentication (its identity provider, then
``@socket_authenticated`` / ``@web.authenticated``), the Authorizer with
``auth_resource = "channels"`` (``read`` to connect or read, ``write`` to
send), and Jupyter's Origin and XSRF rules. A request carrying the kernel
token is authenticated as the kernel identity on these endpoints only.
"""

from __future__ import annotations

from typing import Any, cast

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web, websocket

from ..auth.kernel import kernel_user, presented_token, token_matches
from ..constants import AUTH_RESOURCE, Kind
from ..hub import Hub
from .rest import REST_PATTERNS, WS_PATTERN, MessagesEdge, PresenceEdge, RestEdge, TopicsEdge
from .socket import SocketEdge


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


class ChannelsWebSocket(
    SocketEdge,
    ChannelsAuthMixin,
    WebSocketMixin,
    ExtensionHandlerMixin,
    JupyterHandler,
    websocket.WebSocketHandler,
):
    """``{base_url}api/channels/websocket``: one connection, any number of topics."""


class ChannelsAPIHandler(ChannelsAuthMixin, ExtensionHandlerMixin, APIHandler):
    """Base of the extension's REST handlers."""

    def check_xsrf_cookie(self) -> None:
        # A request that carries no valid credentials (a wrong token, no cookie) is told
        # that, not what an XSRF check wants: it was never going to pass @authenticated.
        if getattr(self, "_jupyter_current_user", "unset") is None:
            raise web.HTTPError(403, "not authenticated: a valid token or login is required")
        super().check_xsrf_cookie()


class TopicsHandler(TopicsEdge, ChannelsAPIHandler):
    """``GET topics``."""


class MessagesHandler(MessagesEdge, ChannelsAPIHandler):
    """``GET``/``POST topics/{topic}/messages``."""


class PresenceHandler(PresenceEdge, ChannelsAPIHandler):
    """``GET topics/{topic}/presence``."""


_REST: dict[type[RestEdge], type[JupyterHandler]] = {
    TopicsEdge: TopicsHandler,
    MessagesEdge: MessagesHandler,
    PresenceEdge: PresenceHandler,
}


def handlers() -> list[tuple[str, type[JupyterHandler]]]:
    """URL patterns below ``base_url``."""
    return [
        (WS_PATTERN, ChannelsWebSocket),
        *((pattern, _REST[edge]) for pattern, edge in REST_PATTERNS),
    ]
