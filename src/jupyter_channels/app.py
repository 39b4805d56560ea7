"""The Jupyter server extension: configuration, wiring and lifecycle.

It hosts the topics itself, or, with ``service_url`` set, hosts none and points
its kernels and widgets at that channels service (``jupyter channels serve``):
the channels endpoints are then not registered on this server (404).
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import TraitError, Unicode, default, validate

from .auth.kernel import export_env, mint_token, websocket_url
from .client.discovery import http_url as service_base_url
from .client.discovery import websocket_url as service_endpoint
from .constants import ENV_SERVICE_URL
from .edges.jupyter import handlers
from .hub import Hub
from .logs import attach_logs
from .settings import ENTRY_POINT_GROUP, ChannelsSettings, load_channel_class

__all__ = ["ENTRY_POINT_GROUP", "ChannelsApp", "load_channel_class"]


def _service_base(url: str) -> str:
    """``url`` as a base URL ending in ``/``; an error for anything but http(s)."""
    if not url:
        return url
    if not url.startswith(("http://", "https://")):
        raise TraitError(f"ChannelsApp.service_url must be an http(s) URL, not {url!r}")
    return service_base_url(url)


class ChannelsApp(ChannelsSettings, ExtensionApp):
    """Realtime topic channels for Jupyter."""

    name = "jupyter_channels"
    description = __doc__

    service_url = Unicode(
        help=(
            "The http(s) base URL of a channels service (jupyter channels serve) that hosts "
            "the topics instead of this server (default: $JUPYTER_CHANNELS_SERVICE_URL). "
            "Kernels get its WebSocket endpoint as $JUPYTER_CHANNELS_URL, widgets connect "
            "to it from the page, and this server's channels endpoints are not registered."
        ),
    ).tag(config=True)
    service_token = Unicode(
        "",
        help=(
            "With service_url: the service token (from its tokens file) that this server's "
            "kernels and widgets use, exported to kernels as $JUPYTER_CHANNELS_TOKEN."
        ),
    ).tag(config=True)

    @default("service_url")
    def _default_service_url(self) -> str:
        # traitlets validates assigned values only, so the environment's is checked here.
        return _service_base(os.environ.get(ENV_SERVICE_URL, ""))

    @validate("service_url")
    def _check_service_url(self, proposal: Any) -> str:
        return _service_base(str(proposal["value"]))

    hub: Hub | None = None
    kernel_token: str

    def initialize_settings(self) -> None:
        # The server's log, not this app's: --log-level sets the server's level only.
        attach_logs(self.serverapp.log if self.serverapp is not None else self.log)
        if self.service_url:
            self._export_env()
            self.log.info("jupyter_channels: topics are hosted by %s", self.service_url)
            return
        self.hub = self.make_hub()
        self.kernel_token = mint_token()
        self._export_env()
        self.settings.update(
            {"jupyter_channels_hub": self.hub, "jupyter_channels_kernel_token": self.kernel_token}
        )
        self.log.info("jupyter_channels: %s", self.describe(self.hub))

    def _export_env(self) -> None:
        if self.service_url:
            # The service URL goes along so the widget's page side knows to ask its kernel
            # where the channels are, instead of using this server's (absent) endpoint.
            os.environ[ENV_SERVICE_URL] = self.service_url
            export_env(service_endpoint(self.service_url), self.service_token)
            return
        server = self.serverapp
        if server is None or server.sock:
            return
        url = websocket_url(server.ip, server.port, server.base_url, bool(server.certfile))
        export_env(url, self.kernel_token)

    def initialize_handlers(self) -> None:
        if not self.service_url:
            self.handlers.extend(handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self._export_env()  # the port is final now
        if self.hub is not None:
            await self.hub.ensure_started()

    async def stop_extension(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
