"""JupyterHub identity for the service when it runs as a hub service.

JupyterHub starts a service with ``$JUPYTERHUB_API_TOKEN``,
``$JUPYTERHUB_SERVICE_NAME``, ``$JUPYTERHUB_SERVICE_PREFIX`` and
``$JUPYTERHUB_CLIENT_ID`` in its environment. Then every request is
authenticated by the hub, through JupyterHub's own ``HubOAuth``:

- kernels, scripts and the CLI present a hub API token (``Authorization: token
  T``, ``Bearer T`` or ``?token=T``);
- browsers present the service's OAuth cookie, set by ``{prefix}oauth_callback``
  at the end of the hub's OAuth flow (started at ``{prefix}api/channels/login``);
  a cookie-authenticated request other than a GET passes JupyterHub's XSRF
  check, exactly as the hub does it.

Either way the identity is the hub's (username, groups, admin) and the request
needs the scope ``access:services!service=<name>``: a token without it is
refused, whoever it belongs to. Token lookups are cached by ``HubOAuth`` for
``c.HubOAuth.cache_max_age`` seconds (negative answers too), so a reconnecting
class costs the hub one lookup per token, not one per connection.

``jupyterhub`` is imported only here, and only when the service runs under a hub.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tornado import web

from .tokens import TokenUser, initials_of, presented_token

if TYPE_CHECKING:
    from jupyterhub.services.auth import HubOAuth

#: The variables JupyterHub sets for a service; all of them mean "running under a hub".
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_NAME")


def running_under_hub() -> bool:
    return all(os.environ.get(name) for name in HUB_ENV)


def hub_user(model: dict[str, Any]) -> TokenUser:
    """The identity of a hub user (or hub service) model, as the hub gave it."""
    name = str(model["name"])
    # A hub service acting on its own is named so that it can never pass for a user.
    username = name if model.get("kind", "user") == "user" else f"service-{name}"
    return TokenUser(
        username=username,
        name=name,
        display_name=name,
        initials=initials_of(name),
        groups=tuple(str(g) for g in model.get("groups") or ()),
        admin=bool(model.get("admin", False)),
        token_id=str(model.get("token_id") or ""),
    )


class HubIdentity:
    """Who a request is, according to the hub; see the module's docstring."""

    def __init__(self, auth: HubOAuth, service_name: str) -> None:
        self.auth = auth
        self.service_name = service_name
        self.required_scope = f"access:services!service={service_name}"

    @classmethod
    def from_environment(cls, parent: Any = None) -> HubIdentity:
        """The hub's identity for this service, from the variables the hub set."""
        try:
            from jupyterhub.services.auth import HubOAuth
        except ImportError as e:
            raise RuntimeError(
                "running as a JupyterHub service needs the jupyterhub package: "
                'pip install "jupyter-channels[hub]"'
            ) from e
        auth = HubOAuth(parent=parent)
        # The scope to require is this service's, whatever else the hub may list.
        auth.access_scopes = {f"access:services!service={os.environ['JUPYTERHUB_SERVICE_NAME']}"}
        return cls(auth, os.environ["JUPYTERHUB_SERVICE_NAME"])

    @property
    def cookie_name(self) -> str:
        return str(self.auth.cookie_name)

    async def identify(self, handler: web.RequestHandler) -> TokenUser | None:
        """The hub user of ``handler``'s request; ``None`` when it presents no valid token or
        cookie; ``HTTPError(403)`` when the hub knows it but it lacks this service's scope."""
        token = presented_token(handler.request.headers, handler.get_query_argument("token", None))
        if token:
            model = await self.auth.user_for_token(token, sync=False)
            if model is not None:
                # Token-authenticated: JupyterHub's XSRF check does not apply to it.
                handler._token_authenticated = True  # type: ignore[attr-defined]
        else:
            # The service's OAuth cookie; JupyterHub checks XSRF on what is not a GET.
            model = await self.auth.get_user(handler, sync=False)
        if not model:
            return None
        if not self.auth.check_scopes({self.required_scope}, model):
            raise web.HTTPError(403, f"{model.get('name')!s} lacks the scope {self.required_scope}")
        return hub_user(model)
