"""``jupyter channels serve``: the hub as a standalone Tornado server, shared by people
on different Jupyter servers.

The same hub, protocol, history, presence, limits and REST API as the server
extension, under ``{base_url}api/channels/``, without jupyter_server in the
process. The hub's traits are read from ``c.ChannelsApp.*`` (one config file
serves the extension and the service); the service's own from
``c.ChannelsService.*``. Every request authenticates with a token of the
tokens file. SIGTERM or SIGINT stops it gracefully: members leave, the store
is flushed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.log import LogFormatter
from traitlets import Float, Int, List, Unicode, default, validate
from traitlets.config import Application, Config

from ._version import __version__
from .auth.tokens import TokensFile
from .constants import CloseCode
from .edges.service import handlers
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

    ip = Unicode("127.0.0.1", help="The address to listen on.").tag(config=True)
    port = Int(8765, help="The port to listen on.").tag(config=True)
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
        if not self.tokens_file:
            self.log.critical(
                "jupyter channels serve needs --tokens FILE: it accepts no request without a token"
            )
            self.exit(1)
        try:
            tokens = TokensFile(self.tokens_file)
        except (OSError, ValueError) as e:
            self.log.critical("cannot read the tokens file: %s", e)
            self.exit(1)
        asyncio.run(self.serve(tokens))

    async def serve(self, tokens: TokensFile) -> None:
        settings = ChannelsSettings(parent=self)
        hub = settings.make_hub()
        app = web.Application(
            handlers(self.base_url),
            jupyter_channels_hub=hub,
            jupyter_channels_tokens=tokens,
            jupyter_channels_allow_origins=list(self.allow_origins),
            websocket_ping_interval=0,  # the hub sends its own heartbeat
            log_function=log_request,
        )
        await hub.ensure_started()
        server = HTTPServer(app, xheaders=True)
        server.listen(self.port, self.ip, backlog=1024)
        watcher = PeriodicCallback(
            lambda: revoke(hub, tokens.reload_if_changed()), self.tokens_check_interval * 1000
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
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        self.log.info("stopping: closing connections and flushing history")
        watcher.stop()
        server.stop()
        await hub.stop()
        await server.close_all_connections()
        self.log.info("stopped")


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
