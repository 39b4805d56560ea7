"""The service's browser login under JupyterHub (imported only when it runs as a hub
service; ``auth/hub.py`` says how requests are authenticated).

- ``{prefix}api/channels/login``: signed in (the service's OAuth cookie is
  valid), it says who as JSON (``Accept: application/json``) or as a short page;
  otherwise it starts the hub's OAuth flow (a redirect to the hub's authorize
  URL, with JupyterHub's state cookie and PKCE) which comes back to it. The
  widget fetches it with ``fetch`` (same origin, redirects followed): with a
  hub that skips the confirmation page for this service (``oauth_no_confirm``)
  and a user logged in to the hub, the user sees nothing.
- ``{prefix}oauth_callback``: JupyterHub's own ``HubOAuthCallbackHandler``,
  which stores the OAuth token in the service's cookie.
"""

from __future__ import annotations

import html
import json
from typing import Any, cast
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from ..auth.hub import HubIdentity
from ..constants import LOGIN_PATH
from .service import ServiceAuthMixin


class ServiceLogin(ServiceAuthMixin, HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """``{prefix}api/channels/login``."""

    def initialize(self, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth

    def get_current_user(self) -> Any:
        # Set by prepare() (asynchronously); never looked up again here.
        return None

    def check_xsrf_cookie(self) -> None:
        # A GET that changes nothing: JupyterHub's XSRF check is for the API's writes.
        return None

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        user = self.current_user
        if user is None:
            # The hub's authorize URL, with the state cookie (and PKCE) JupyterHub checks
            # when the flow comes back to oauth_callback, then here.
            self.redirect(self.get_login_url())
            return
        if "application/json" in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"username": user.username, "name": user.name}))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        name = html.escape(user.name)
        self.finish(
            "<!doctype html><meta charset=utf-8><title>Signed in to channels</title>"
            f"<p>Signed in to channels as <b>{name}</b>. You can close this tab.</p>"
        )


class ServiceOAuthCallback(HubOAuthCallbackHandler):  # type: ignore[misc]
    """``{prefix}oauth_callback``: JupyterHub's callback, given the service's ``HubOAuth``."""

    def initialize(self, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth


def login_handlers(
    base_url: str, identity: HubIdentity
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]]]:
    """The login and OAuth callback endpoints of a service running under a hub."""
    callback = urlsplit(cast(str, identity.auth.oauth_redirect_uri)).path or (
        base_url + "oauth_callback"
    )
    options = {"hub_auth": identity.auth}
    return [
        (base_url.rstrip("/") + "/" + LOGIN_PATH, ServiceLogin, options),
        (callback, ServiceOAuthCallback, options),
    ]
