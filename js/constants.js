// Every reserved name of the wire protocol, in one place: the JS mirror of
// src/jupyter_channels/constants.py (tests/widget/test_js_constants.py keeps the
// two equal). The protocol itself is described in docs/protocol.md.

/** The `event` field of a frame. */
export const Event = Object.freeze({
  // client -> server
  JOIN: "join",
  MESSAGE: "message",
  LEAVE: "leave",
  HISTORY: "history",
  HEARTBEAT: "heartbeat",
  // server -> client
  REPLY: "reply",
  PRESENCE_STATE: "presence_state",
  PRESENCE_DIFF: "presence_diff",
  CLOSE: "close",
  ERROR: "error",
});

/** The `status` of a reply. */
export const Status = Object.freeze({
  OK: "ok",
  ERROR: "error",
});

/** The `reason` of an error reply or `error` frame. */
export const ErrorCode = Object.freeze({
  INVALID_MESSAGE: "invalid_message",
  UNMATCHED_TOPIC: "unmatched_topic",
  NOT_JOINED: "not_joined",
  JOIN_REJECTED: "join_rejected",
  UNAUTHORIZED: "unauthorized",
  TOO_LARGE: "too_large",
  RATE_LIMITED: "rate_limited",
  TOO_MANY_TOPICS: "too_many_topics",
  UNAVAILABLE: "unavailable",
  TIMEOUT: "timeout",
  INTERNAL_ERROR: "internal_error",
});

/** WebSocket close codes the server uses. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** The broker lost the topic's history: reconnect and rejoin. */
  SERVICE_RESTART: 1012,
  MESSAGE_TOO_BIG: 1009,
  IDLE_TIMEOUT: 4000,
  /** The token the connection was made with is no longer accepted (the service). */
  TOKEN_REVOKED: 4001,
  SLOW_CONSUMER: 4008,
  /** The user already has max_connections_per_user connections open. */
  TOO_MANY_CONNECTIONS: 4029,
});

/** Who is on the other end of a connection. */
export const Kind = Object.freeze({
  BROWSER: "browser",
  KERNEL: "kernel",
  SERVER: "server",
});

/** The standard subjects the widget shows specially. */
export const Subject = Object.freeze({
  TEXT: "text",
  CELL: "cell",
  /** `{}`, sent ephemeral */
  TYPING: "typing",
  /** `{offset, text}`: the author's or a moderator's */
  EDIT: "edit",
  /** `{offset}`: the author's or a moderator's */
  DELETE: "delete",
  /** `{user, seconds}`: a moderator's */
  MUTE: "mute",
});

/** The text frame the server sends every `heartbeat_interval` (Amber's liveness signal). */
export const PING_TEXT = "ping";

/** URL paths below the server's `base_url`. */
export const WS_PATH = "api/channels/websocket";
export const REST_ROOT = "api/channels/";

export const TOPIC_RE = /^[A-Za-z0-9_.:@/+\-]{1,255}$/;

export const DEFAULT_HEARTBEAT_INTERVAL = 30.0;
export const DEFAULT_HISTORY_LIMIT = 50;
export const MAX_HISTORY_LIMIT = 500;

// The client's own defaults (milliseconds), the same numbers as the Python client's.
/** Every request waits at most this long for its reply. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** The reconnect backoff never waits longer than this. */
export const MAX_BACKOFF_MS = 10_000;
/** Pushes held while disconnected before `push` refuses more. */
export const MAX_BUFFERED = 100;
