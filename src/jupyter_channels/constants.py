"""Every reserved name of the wire protocol, in one place.

The JavaScript side mirrors these in ``js/constants.js``; the protocol itself is
described in ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import re


class Event(str, enum.Enum):
    """The ``event`` field of a frame."""

    # client -> server
    JOIN = "join"
    MESSAGE = "message"
    LEAVE = "leave"
    HISTORY = "history"
    HEARTBEAT = "heartbeat"
    # server -> client
    REPLY = "reply"
    PRESENCE_STATE = "presence_state"
    PRESENCE_DIFF = "presence_diff"
    CLOSE = "close"
    ERROR = "error"


CLIENT_EVENTS = frozenset({Event.JOIN, Event.MESSAGE, Event.LEAVE, Event.HISTORY, Event.HEARTBEAT})


class Status(str, enum.Enum):
    """The ``status`` of a reply."""

    OK = "ok"
    ERROR = "error"


class ErrorCode(str, enum.Enum):
    """The ``reason`` of an error reply or ``error`` frame."""

    INVALID_MESSAGE = "invalid_message"
    UNMATCHED_TOPIC = "unmatched_topic"
    NOT_JOINED = "not_joined"
    JOIN_REJECTED = "join_rejected"
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_TOPICS = "too_many_topics"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    INTERNAL_ERROR = "internal_error"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    #: The broker lost the topic's history: reconnect and rejoin.
    SERVICE_RESTART = 1012
    MESSAGE_TOO_BIG = 1009
    IDLE_TIMEOUT = 4000
    #: The token the connection was made with is no longer accepted (the service).
    TOKEN_REVOKED = 4001
    SLOW_CONSUMER = 4008
    #: The user already has ``max_connections_per_user`` connections open.
    TOO_MANY_CONNECTIONS = 4029


class Kind(str, enum.Enum):
    """Who is on the other end of a connection."""

    BROWSER = "browser"
    KERNEL = "kernel"
    SERVER = "server"


class Subject(str, enum.Enum):
    """The standard subjects the widget shows specially (any other is shown as JSON).

    The server itself checks ``edit``, ``delete`` and ``mute`` (who may send them,
    and their shape) before the channel's ``handle_message`` runs.
    """

    TEXT = "text"  # {"text"}
    CELL = "cell"  # {"source", "language", "execution_count"?, "outputs"?, "notebook"?}
    TYPING = "typing"  # {}, ephemeral
    EDIT = "edit"  # {"offset", "text"}: the author's or a moderator's
    DELETE = "delete"  # {"offset"}: the author's or a moderator's
    MUTE = "mute"  # {"user", "seconds"}: a moderator's


#: The text frame the server sends every ``heartbeat_interval`` (Amber's liveness signal).
PING_TEXT = "ping"

#: The Authorizer resource of every endpoint of the extension.
AUTH_RESOURCE = "channels"

#: Environment variables exported for kernels launched by the server.
ENV_URL = "JUPYTER_CHANNELS_URL"
ENV_TOKEN = "JUPYTER_CHANNELS_TOKEN"
#: The channels service a Jupyter server points its users at (``ChannelsApp.service_url``).
ENV_SERVICE_URL = "JUPYTER_CHANNELS_SERVICE_URL"
#: Set by JupyterHub in a user's server, inherited by its kernels: their hub API token.
ENV_HUB_TOKEN = "JUPYTERHUB_API_TOKEN"

#: URL paths below the server's ``base_url``.
WS_PATH = "api/channels/websocket"
REST_ROOT = "api/channels/"
#: A service under JupyterHub: where a browser signs in through the hub's OAuth.
LOGIN_PATH = "api/channels/login"

TOPIC_RE = re.compile(r"^[A-Za-z0-9_.:@/+\-]{1,255}$")

# Defaults fixed by the design contract.
DEFAULT_HISTORY_SIZE = 1000
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
DEFAULT_MAX_TOPICS = 100
DEFAULT_RATE_LIMIT = 100.0
DEFAULT_RATE_BURST = 200
DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024
DEFAULT_HEARTBEAT_INTERVAL = 30.0
DEFAULT_IDLE_TIMEOUT = 90.0
DEFAULT_MAX_JOIN_PAYLOAD_SIZE = 64 * 1024
DEFAULT_MAX_CONNECTIONS_PER_USER = 200
#: Seconds over which a topic's joins and leaves are sent as one ``presence_diff``.
DEFAULT_PRESENCE_INTERVAL = 0.1
#: Joins per second one server admits (after a burst of ``DEFAULT_JOIN_BURST``).
DEFAULT_JOIN_RATE = 500.0
DEFAULT_JOIN_BURST = 500
#: Distinct topics with history (new topics past it: too_many_topics).
DEFAULT_MAX_STORED_TOPICS = 100_000
DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 500
#: Topics in one page of ``GET topics`` (its ``limit``'s default and cap).
MAX_TOPIC_PAGE = 1000
#: ``message`` frames of one connection being handled at once before the server stops reading it.
MAX_IN_FLIGHT = 64
#: A frame this many times ``max_message_size`` or bigger closes the connection (1009).
OVERSIZE_CLOSE_FACTOR = 4
