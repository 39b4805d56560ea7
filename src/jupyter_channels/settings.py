"""The hub's settings: every ``c.ChannelsApp.*`` trait that shapes the hub, and building it.

The server extension and the standalone service read the same traits from the
same config section, so one config file serves both; neither copy of the
wiring can drift from the other.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Dict, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable
from traitlets.utils.importstring import import_item

from .brokers import Broker, broker_for_url, check_broker_url
from .brokers.local import LocalBroker
from .channel import Channel, Router, is_pattern
from .constants import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HISTORY_SIZE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_JOIN_BURST,
    DEFAULT_JOIN_RATE,
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_JOIN_PAYLOAD_SIZE,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_STORED_TOPICS,
    DEFAULT_MAX_TOPICS,
    DEFAULT_PRESENCE_INTERVAL,
    DEFAULT_RATE_BURST,
    DEFAULT_RATE_LIMIT,
)
from .history.sqlite import SqliteHistory
from .hub import Hub, Limits
from .hub.permissions import Permissions, RuleError

#: The config section of the hub's traits, in the extension and in the service.
SECTION = "ChannelsApp"

ENTRY_POINT_GROUP = "jupyter_channels.channels"


def load_channel_class(spec: str | type[Channel]) -> type[Channel]:
    """``"pkg.module:Class"`` (or ``"pkg.module.Class"``) to a Channel subclass."""
    cls = import_item(spec.replace(":", ".")) if isinstance(spec, str) else spec
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{spec!r} is not a jupyter_channels.Channel subclass")
    return cls


class ChannelsSettings(Configurable):
    """The hub's traits; configured as ``c.ChannelsApp.<trait>`` wherever it runs."""

    @classmethod
    def section_names(cls) -> list[str]:
        # The service's settings answer to the extension's section: one config, two hosts.
        names: list[str] = super().section_names()
        return names if SECTION in names else [*names, SECTION]

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
    presence_interval = Float(
        DEFAULT_PRESENCE_INTERVAL,
        help=(
            "Seconds over which a topic's joins and leaves are sent as one presence_diff "
            "(and every joiner of the interval gets the same presence_state); 0 sends each "
            "join and leave at once as its own diff."
        ),
    ).tag(config=True)
    join_rate = Float(
        DEFAULT_JOIN_RATE,
        help=(
            "Joins per second this server admits, after a burst of join_burst; a join over "
            "it is answered 'unavailable' with retry_after (ms), spreading a reconnect "
            "storm over time (0: no limit)."
        ),
    ).tag(config=True)
    join_burst = Int(DEFAULT_JOIN_BURST, help="Joins admitted at once (join_rate).").tag(
        config=True
    )
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

    permissions: List[Any] = List(
        default_value=None,
        allow_none=True,
        help=(
            "Topic permissions: a list of rules such as {'topic': 'announce:*', 'join': '*', "
            "'send': '@teachers'}; the first rule whose topic pattern matches decides, a "
            "topic no rule matches is refused. None: everyone may join and send anywhere."
        ),
    ).tag(config=True)

    @validate("permissions")
    def _check_permissions(self, proposal: Any) -> list[Any] | None:
        try:
            Permissions(proposal["value"])
        except RuleError as e:
            raise TraitError(f"ChannelsApp.{e}") from None
        return proposal["value"]  # type: ignore[no-any-return]

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

    @validate("presence_interval", "join_rate")
    def _check_not_negative(self, proposal: Any) -> float:
        name, value = proposal["trait"].name, proposal["value"]
        if value < 0:
            raise TraitError(f"ChannelsApp.{name} must not be negative, not {value}")
        return float(value)

    @validate("channels")
    def _check_channels(self, proposal: Any) -> dict[str, str]:
        for pattern in proposal["value"]:
            if not is_pattern(pattern):
                raise TraitError(
                    f"ChannelsApp.channels: invalid pattern {pattern!r} "
                    "(an exact topic, 'prefix:*' or '*')"
                )
        return dict(proposal["value"])

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

    def make_limits(self) -> Limits:
        return Limits(
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
            presence_interval=self.presence_interval,
            join_rate=self.join_rate,
            join_burst=self.join_burst,
        )

    def make_hub(self) -> Hub:
        """A hub with the configured broker, limits and channels (not started)."""
        hub = Hub(Router(), self.make_broker(), self.make_limits(), Permissions(self.permissions))
        self.build_router(hub)
        return hub

    def describe(self, hub: Hub) -> str:
        """One log line's worth: the channels and where history is kept."""
        patterns = ", ".join(hub.router.patterns()) or "(none)"
        where = self.history_path if not self.broker_url else hub.broker
        return f"channels on {patterns}, history in {where}"
