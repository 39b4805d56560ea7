"""The Jupyter server extension: configuration, wiring and lifecycle."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Dict, Float, Int, TraitError, Unicode, default, validate
from traitlets.utils.importstring import import_item

from .auth import export_env, mint_token, websocket_url
from .brokers import Broker, broker_for_url, check_broker_url
from .brokers.local import LocalBroker
from .channel import Channel, Router, is_pattern
from .constants import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HISTORY_SIZE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_JOIN_PAYLOAD_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_STORED_TOPICS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_LIMIT,
)
from .edges.jupyter import handlers
from .history.sqlite import SqliteHistory
from .hub import Hub, Limits
from .logs import attach_logs

ENTRY_POINT_GROUP = "jupyter_channels.channels"


def load_channel_class(spec: str | type[Channel]) -> type[Channel]:
    """``"pkg.module:Class"`` (or ``"pkg.module.Class"``) to a Channel subclass."""
    cls = import_item(spec.replace(":", ".")) if isinstance(spec, str) else spec
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{spec!r} is not a jupyter_channels.Channel subclass")
    return cls


class ChannelsApp(ExtensionApp):
    """Realtime topic channels for Jupyter."""

    name = "jupyter_channels"
    description = __doc__

    channels = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help=(
            "Channels by topic pattern: an exact topic, 'prefix:*' or '*', mapped to a "
            "'module:Class' Channel subclass. Added to the entry-point group "
            "'jupyter_channels.channels' and the default channel on '*'."
        ),
    ).tag(config=True)

    default_channel = Unicode(
        "jupyter_channels.channel:RebroadcastChannel",
        allow_none=True,
        help="The Channel class on '*' (None: topics no pattern matches are refused).",
    ).tag(config=True)

    history_path = Unicode(
        help="The SQLite history file (':memory:' keeps history in memory only)."
    ).tag(config=True)

    @default("history_path")
    def _default_history_path(self) -> str:
        return os.path.join(jupyter_data_dir(), "channels", "history.sqlite")

    history_size = Int(
        DEFAULT_HISTORY_SIZE, help="Messages retained per topic (the newest ones)."
    ).tag(config=True)
    max_message_size = Int(
        DEFAULT_MAX_MESSAGE_SIZE,
        help="Largest inbound frame in bytes (too_large); 4x closes the connection (1009).",
    ).tag(config=True)
    max_join_payload_size = Int(
        DEFAULT_MAX_JOIN_PAYLOAD_SIZE,
        help="Largest join payload in bytes, kept for as long as the subscription (too_large).",
    ).tag(config=True)
    max_topics = Int(
        DEFAULT_MAX_STORED_TOPICS,
        help="Distinct topics with stored history; a message to one more: too_many_topics.",
    ).tag(config=True)
    max_connections_per_user = Int(
        DEFAULT_MAX_CONNECTIONS_PER_USER,
        help=(
            "Open WebSocket connections per username; the next one is closed at once "
            "(4029). Kernels using the kernel token share the username 'kernel'."
        ),
    ).tag(config=True)
    max_topics_per_connection = Int(
        DEFAULT_MAX_TOPICS, help="Topics one connection may join (too_many_topics)."
    ).tag(config=True)
    rate_limit = Float(
        DEFAULT_RATE_LIMIT, help="Inbound frames per second per connection (0: no limit)."
    ).tag(config=True)
    rate_burst = Int(DEFAULT_RATE_BURST, help="Frames a connection may send at once.").tag(
        config=True
    )
    max_queued_bytes = Int(
        DEFAULT_MAX_QUEUED_BYTES,
        help="Unsent outbound bytes per connection before it is closed (4008 slow consumer).",
    ).tag(config=True)
    heartbeat_interval = Float(
        DEFAULT_HEARTBEAT_INTERVAL, help="Seconds between 'ping' frames to every client."
    ).tag(config=True)
    idle_timeout = Float(
        DEFAULT_IDLE_TIMEOUT,
        help="Seconds without any frame or pong after which a connection is closed (4000).",
    ).tag(config=True)
    hook_timeout = Float(
        10.0, help="Seconds a channel hook may take before the client gets 'timeout'."
    ).tag(config=True)
    broker_url = Unicode(
        "",
        help=(
            "Empty for the embedded broker (in-process fan-out, SQLite history); "
            "'redis://[:password@]host:port/db' (or 'rediss://') to share topics, history "
            "and presence with every server on that Redis (needs jupyter-channels[redis])."
        ),
    ).tag(config=True)
    presence_ttl = Float(
        30.0,
        help=(
            "With a shared broker: seconds this server's members stay listed on the other "
            "servers without a refresh (it refreshes every third of this); a server that "
            "dies stops counting within about 4/3 of it."
        ),
    ).tag(config=True)

    @validate("broker_url")
    def _check_broker_url(self, proposal: Any) -> str:
        try:
            check_broker_url(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None
        return str(proposal["value"])

    @validate("presence_ttl")
    def _check_presence_ttl(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError(f"ChannelsApp.presence_ttl must be positive, not {proposal['value']}")
        return float(proposal["value"])

    @validate("channels")
    def _check_channels(self, proposal: Any) -> dict[str, str]:
        for pattern in proposal["value"]:
            if not is_pattern(pattern):
                raise TraitError(
                    f"ChannelsApp.channels: invalid pattern {pattern!r} "
                    "(an exact topic, 'prefix:*' or '*')"
                )
        return dict(proposal["value"])

    hub: Hub
    kernel_token: str

    def channel_specs(self) -> dict[str, str | type[Channel]]:
        """Pattern -> class, lowest precedence first: default, entry points, config."""
        specs: dict[str, str | type[Channel]] = {}
        if self.default_channel:
            specs["*"] = self.default_channel
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            specs[ep.name] = ep.value
        specs.update(self.channels)
        return specs

    def build_router(self, hub: Hub) -> None:
        for pattern, spec in self.channel_specs().items():
            hub.router.add(pattern, load_channel_class(spec)(hub, pattern))

    def initialize_settings(self) -> None:
        # The server's log, not this app's: --log-level sets the server's level only.
        attach_logs(self.serverapp.log if self.serverapp is not None else self.log)
        limits = Limits(
            max_message_size=self.max_message_size,
            max_topics_per_connection=self.max_topics_per_connection,
            rate_limit=self.rate_limit,
            rate_burst=self.rate_burst,
            max_queued_bytes=self.max_queued_bytes,
            heartbeat_interval=self.heartbeat_interval,
            idle_timeout=self.idle_timeout,
            hook_timeout=self.hook_timeout,
            max_join_payload_size=self.max_join_payload_size,
            max_connections_per_user=self.max_connections_per_user,
        )
        self.hub = Hub(Router(), self.make_broker(), limits)
        self.build_router(self.hub)
        self.kernel_token = mint_token()
        self._export_env()
        self.settings.update(
            {"jupyter_channels_hub": self.hub, "jupyter_channels_kernel_token": self.kernel_token}
        )
        self.log.info(
            "jupyter_channels: channels on %s, history in %s",
            ", ".join(self.hub.router.patterns()) or "(none)",
            self.history_path if not self.broker_url else self.hub.broker,
        )

    def make_broker(self) -> Broker:
        broker: Broker
        if not self.broker_url:
            broker = LocalBroker(SqliteHistory(self.history_path, self.history_size))
        else:
            broker = broker_for_url(
                self.broker_url, history_size=self.history_size, presence_ttl=self.presence_ttl
            )
        broker.store.max_topics = self.max_topics
        return broker

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
