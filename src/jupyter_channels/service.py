"""``jupyter channels serve``: the hub as a standalone Tornado server, shared by people
on different Jupyter servers.

The same hub, protocol, history, presence, limits and REST API as the server
extension, under ``{base_url}api/channels/``, without jupyter_server in the
process. The hub's traits are read from ``c.ChannelsApp.*`` (one config file
serves the extension and the service); the service's own from
``c.ChannelsService.*``. Every request authenticates, with a token of the
tokens file or, when it runs as a JupyterHub service, through the hub
(``auth/hub.py``). SIGTERM or SIGINT stops it gracefully: members leave, the
store is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyter_core.paths import jupyter_data_dir
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.log import LogFormatter
from traitlets import Enum, Float, Int, List, Unicode, default, validate
from traitlets.config import Application, Config

from ._version import __version__
from .auth.hub import running_under_hub
from .auth.tokens import TokensFile
from .constants import CloseCode
from .edges.service import Authenticator, TokensAuth, handlers
from .hub import Hub
from .logs import attach_logs
from .settings import ChannelsSettings

#: Jupyter's log format, so the service's lines read like a Jupyter server's.
LOG_FORMAT = (
    "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s]%(end_color)s %(message)s"
)


class ChannelsService(Application):
    """Realtime topic channels as a standalone service."""

    name = "jupyter-channels-serve"
    version = __version__
    description = __doc__

    aliases = {
        "ip": "ChannelsService.ip",
        "port": "ChannelsService.port",
        "base-url": "ChannelsService.base_url",
        "config": "ChannelsService.config_file",
        "tokens": "ChannelsService.tokens_file",
        "log-level": "Application.log_level",
    }
    classes = [ChannelsSettings]

    ip = Unicode(
        help="The address to listen on (default: $JUPYTERHUB_SERVICE_URL's, else 127.0.0.1)."
    ).tag(config=True)
    port = Int(help="The port to listen on (default: $JUPYTERHUB_SERVICE_URL's, else 8765).").tag(
        config=True
    )
    authentication = Enum(
        ["tokens", "jupyterhub"],
        help=(
            "How requests authenticate: 'tokens' (the tokens file) or 'jupyterhub' (the hub's "
            "OAuth and API tokens). Default: 'jupyterhub' when it runs as a hub service "
            "($JUPYTERHUB_API_TOKEN and $JUPYTERHUB_SERVICE_NAME set), else 'tokens'."
        ),
    ).tag(config=True)
    cookie_secret_file = Unicode(
        help=(
            "Under JupyterHub: the file holding the secret that signs the service's login "
            "cookie (created if missing), so that a restart keeps browsers signed in. "
            "Default: channels/cookie_secret in Jupyter's data directory. "
            "$JUPYTER_CHANNELS_COOKIE_SECRET (hex) is used instead when set."
        )
    ).tag(config=True)
    base_url = Unicode(
        help="The URL prefix of every endpoint (default: $JUPYTERHUB_SERVICE_PREFIX, else '/')."
    ).tag(config=True)
    config_file = Unicode(
        "", help="A traitlets Python config file (c.ChannelsApp.* and c.ChannelsService.*)."
    ).tag(config=True)
    tokens_file = Unicode(
        "", help="A JSON file mapping each token to an identity (read again when it changes)."
    ).tag(config=True)
    allow_origins = List(
        Unicode(),
        help=(
            "Origins (scheme://host[:port]) whose pages may open browser connections; "
            "default none: the service's own origin only. '*' allows any."
        ),
    ).tag(config=True)
    tokens_check_interval = Float(
        1.0, help="Seconds between checks of the tokens file for changes."
    ).tag(config=True)

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"

    @default("ip")
    def _default_ip(self) -> str:
        return _hub_service_address()[0] or "127.0.0.1"

    @default("port")
    def _default_port(self) -> int:
        return _hub_service_address()[1] or 8765

    @default("authentication")
    def _default_authentication(self) -> str:
        return "jupyterhub" if running_under_hub() else "tokens"

    @default("cookie_secret_file")
    def _default_cookie_secret_file(self) -> str:
        return os.path.join(jupyter_data_dir(), "channels", "cookie_secret")

    @validate("base_url")
    def _check_base_url(self, proposal: Any) -> str:
        return (
            "/" + str(proposal["value"]).strip("/") + "/" if proposal["value"].strip("/") else "/"
        )

    _log_formatter_cls = LogFormatter  # type: ignore[assignment]

    @default("log_format")
    def _default_log_format(self) -> str:
        return LOG_FORMAT

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    def initialize(self, argv: Any = None) -> None:
        self.parse_command_line(argv)
        if self.config_file:
            cli = self.config.copy()
            self.load_config_file(self.config_file)
            self.update_config(Config(cli))  # the command line wins over the file
        attach_logs(self.log)
        for name in ("tornado.access", "tornado.application", "tornado.general"):
            tornado_log = logging.getLogger(name)
            tornado_log.parent, tornado_log.propagate = self.log, True

    def start(self) -> None:
        if self.authentication == "jupyterhub":
            asyncio.run(self.serve(None))
            return
        if not self.tokens_file:
            self.log.critical(
                "jupyter channels serve needs --tokens FILE (or to run as a JupyterHub "
                "service): it accepts no request without a token"
            )
            self.exit(1)
        try:
            tokens = TokensFile(self.tokens_file)
        except (OSError, ValueError) as e:
            self.log.critical("cannot read the tokens file: %s", e)
            self.exit(1)
        asyncio.run(self.serve(tokens))

    def _hub_login(self) -> tuple[Authenticator, list[Any], dict[str, Any]]:
        """The hub's authenticator, the login endpoints and the cookie secret's setting."""
        from .auth.hub import HubIdentity

        try:
            identity = HubIdentity.from_environment(parent=self)
        except (RuntimeError, KeyError, ValueError) as e:
            self.log.critical("cannot authenticate through JupyterHub: %s", e)
            self.exit(1)
        from .edges.hub import login_handlers

        self.log.info(
            "authenticating through JupyterHub as service %r (scope %s)",
            identity.service_name,
            identity.required_scope,
        )
        return (
            identity,
            login_handlers(self.base_url, identity),
            {"cookie_secret": self._cookie_secret()},
        )

    def _cookie_secret(self) -> bytes:
        """The login cookie's signing secret: kept in a file (0600) across restarts."""
        from_env = os.environ.get("JUPYTER_CHANNELS_COOKIE_SECRET")
        if from_env:
            return bytes.fromhex(from_env)
        path = Path(self.cookie_secret_file)
        try:
            return bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret.hex())
        return secret

    async def serve(self, tokens: TokensFile | None) -> None:
        # From the start: a stop asked for while starting up ends the service gracefully too.
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        settings = ChannelsSettings(parent=self)
        auth: Authenticator
        routes: list[Any] = []
        extra: dict[str, Any] = {}
        if tokens is None:
            auth, routes, extra = self._hub_login()
        else:
            auth = TokensAuth(tokens)
        hub = settings.make_hub()
        app = web.Application(
            [*routes, *handlers(self.base_url)],
            jupyter_channels_hub=hub,
            jupyter_channels_auth=auth,
            jupyter_channels_allow_origins=list(self.allow_origins),
            websocket_ping_interval=0,  # the hub sends its own heartbeat
            log_function=log_request,
            **extra,
        )
        await hub.ensure_started()
        server = HTTPServer(app, xheaders=True)
        server.listen(self.port, self.ip, backlog=1024)
        watcher = None
        if tokens is not None:
            watched = tokens
            watcher = PeriodicCallback(
                lambda: revoke(hub, watched.reload_if_changed()), self.tokens_check_interval * 1000
            )
            watcher.start()
        self.log.info("%s", settings.describe(hub))
        self.log.info(
            "jupyter channels serve %s: listening on http://%s:%d%s",
            __version__,
            self.ip,
            self.port,
            self.base_url,
        )
        await stopping.wait()
        self.log.info("stopping: closing connections and flushing history")
        if watcher is not None:
            watcher.stop()
        server.stop()
        await hub.stop()
        await server.close_all_connections()
        self.log.info("stopped")


def _hub_service_address() -> tuple[str, int]:
    """The address JupyterHub gave a hub-managed service ($JUPYTERHUB_SERVICE_URL), if any."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        return "", 0
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 0


def log_request(handler: web.RequestHandler) -> None:
    """Access lines as Jupyter writes them: successes at debug, failures louder; the
    summary never holds a token (``edges/service.py``)."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    logging.getLogger("tornado.access").log(
        level,
        "%d %s %.2fms",
        status,
        handler._request_summary(),
        1000.0 * handler.request.request_time(),
    )


def revoke(hub: Hub, token_ids: set[str]) -> None:
    """Close the connections made with tokens the tokens file no longer holds."""
    if not token_ids:
        return
    for client in list(hub.clients.values()):
        if getattr(client.user, "token_id", None) in token_ids:
            logging.getLogger(__name__).info("closing %r: its token was removed", client)
            client.close(CloseCode.TOKEN_REVOKED, "token revoked")


def main(argv: list[str] | None = None) -> None:
    ChannelsService.launch_instance(argv if argv is not None else sys.argv[1:])
