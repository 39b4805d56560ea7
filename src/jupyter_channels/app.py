"""The Jupyter server extension: configuration, wiring and lifecycle."""

from __future__ import annotations

from typing import Any

from jupyter_server.extension.application import ExtensionApp

from .auth.kernel import export_env, mint_token, websocket_url
from .edges.jupyter import handlers
from .hub import Hub
from .logs import attach_logs
from .settings import ENTRY_POINT_GROUP, ChannelsSettings, load_channel_class

__all__ = ["ENTRY_POINT_GROUP", "ChannelsApp", "load_channel_class"]


class ChannelsApp(ChannelsSettings, ExtensionApp):
    """Realtime topic channels for Jupyter."""

    name = "jupyter_channels"
    description = __doc__

    hub: Hub
    kernel_token: str

    def initialize_settings(self) -> None:
        # The server's log, not this app's: --log-level sets the server's level only.
        attach_logs(self.serverapp.log if self.serverapp is not None else self.log)
        self.hub = self.make_hub()
        self.kernel_token = mint_token()
        self._export_env()
        self.settings.update(
            {"jupyter_channels_hub": self.hub, "jupyter_channels_kernel_token": self.kernel_token}
        )
        self.log.info("jupyter_channels: %s", self.describe(self.hub))

    def _export_env(self) -> None:
        server = self.serverapp
        if server is None or server.sock:
            return
        url = websocket_url(server.ip, server.port, server.base_url, bool(server.certfile))
        export_env(url, self.kernel_token)

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self._export_env()  # the port is final now
        await self.hub.ensure_started()

    async def stop_extension(self) -> None:
        await self.hub.stop()
