// The browser client of jupyter-channels: one WebSocket per page and endpoint,
// multiplexing every channel of the page.
//
//   const socket = getSocket("ws://localhost:8888/api/channels/websocket");
//   const room = socket.channel("chat:lobby");
//   const { messages } = await room.join({ history: 50 });
//   room.on("text", (msg) => console.log(msg.from.name, msg.payload));
//   await room.push("text", { text: "hi" });   // -> {offset}, once stored
//   room.push("typing", {}, { ephemeral: true }); // to those here now, never stored
//   await room.edit(offset, "hi!"); await room.delete(offset);
//   room.members;                               // {username: [meta, ...]}
//   room.leave();
//
// After a dropped connection the socket reconnects with exponential backoff and
// jitter (at most MAX_BACKOFF_MS), at once when the page becomes visible or the
// browser comes back online, and rejoins every channel with `since` = the last
// offset it saw; messages are deduplicated by offset. A rejoin the server cannot
// answer now (`unavailable`, `timeout`, `rate_limited`, or no reply) is tried again
// with backoff, keeping `since`; any other error ends that channel. A join reply
// that says `truncated` is completed before delivery (older messages with `history`
// pages, newer ones of a rejoin by joining again from the last received). The
// backoff starts over only once every join of a connection was answered, joins that
// got the connection closed (4008, slow consumer) are retried one at a time, and a
// channel whose join alone closed it MAX_JOIN_CLOSES times is given up. Pushes made while
// disconnected wait in a bounded buffer, each with its own timeout. Every request
// settles: the ok reply's response, or a ChannelError (an error reply, `timeout`,
// or `unavailable` when the connection is lost or the buffer is full).
//
// The protocol is docs/protocol.md; reserved names are in constants.js.

import {
  CloseCode,
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_TIMEOUT_MS,
  ErrorCode,
  Event,
  MAX_BACKOFF_MS,
  MAX_BUFFERED,
  MAX_HISTORY_LIMIT,
  PING_TEXT,
  Status,
  Subject,
} from "./constants.js";

/** @typedef {{id: string, user: string, name: string, kind: string}} Sender */
/**
 * A message of a topic, as the server sends it.
 * @typedef {object} Message
 * @property {string} topic
 * @property {string} subject
 * @property {unknown} payload
 * @property {number | null} offset null for a push (one client only, never stored) and
 *   for an ephemeral message
 * @property {boolean} [ephemeral] sent to the subscribers of the moment, never stored
 * @property {number} ts milliseconds since the epoch
 * @property {Sender} from stamped by the server
 */
/**
 * One connection of a user in a topic (Phoenix Presence's meta).
 * @typedef {object} Meta
 * @property {string} id
 * @property {string} kind
 * @property {string} name
 * @property {string | null} initials
 * @property {string | null} color
 * @property {number} online_at
 * @property {string} phx_ref
 */
/** @typedef {Record<string, Meta[]>} Members username -> one meta per connection */
/**
 * An ok join reply's response; `can_send` is false on a topic this user may read but not
 * send to (the server's topic permissions), true otherwise.
 * @typedef {{offset: number, epoch: string | null, recovered: boolean, can_send: boolean, messages: Message[]}} JoinResponse
 */
/** @typedef {"connecting" | "connected" | "reconnecting" | "offline" | "closed"} ConnectionState */
/** @typedef {"joining" | "joined" | "rejoining" | "retrying" | "closed"} TopicState */
/** @typedef {{reason: string, detail: string, delay: number}} RetryInfo a rejoin retried in `delay` ms */
/** @typedef {Record<string, unknown>} Frame */

/**
 * The part of the WebSocket API the client uses (a fake in the unit tests).
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((event: any) => void) | null} onopen
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 * @property {((event: {data: unknown}) => void) | null} onmessage
 */
/** @typedef {new (url: string) => WebSocketLike} WebSocketFactory */
/**
 * Timers (a fake clock in the unit tests).
 * @typedef {object} Clock
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(handle: unknown) => void} clearTimeout
 */
/**
 * Where "online", "offline" and "visible" come from (window and document in a browser).
 * @typedef {object} Environment
 * @property {() => boolean} online
 * @property {(listener: (what: "online" | "offline" | "visible") => void) => () => void} subscribe
 */
/**
 * @typedef {object} SocketOptions
 * @property {string} [token] sent as `?token=`; without it the same-origin cookie authenticates
 * @property {number} [timeout] ms every request waits for its reply (default 10 s)
 * @property {number} [heartbeatInterval] ms between heartbeats (default 30 s; 0: none)
 * @property {number} [maxBackoff] ms, the longest wait between reconnect attempts
 * @property {number} [maxBuffered] pushes held while disconnected
 * @property {WebSocketFactory} [WebSocket]
 * @property {Clock} [clock]
 * @property {() => number} [random] in [0, 1): the backoff's jitter
 * @property {Environment} [env]
 */

const OPEN = 1;
/** The first reconnect waits about this long; each failed attempt doubles it. */
const BASE_BACKOFF_MS = 250;
/** Received messages each topic keeps for late joiners on the same page. */
const KEPT_MESSAGES = 1000;
/** Error codes of a rejoin that may work later: the store or broker is down, or slow. */
export const RETRIED = new Set(
  /** @type {string[]} */ ([ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.RATE_LIMITED]),
);
/** Closes "slow consumer" while a topic's join was the only one waiting, before it is given up. */
export const MAX_JOIN_CLOSES = 2;

/** An error reply, a timeout (`reason` "timeout") or a lost connection ("unavailable"). */
export class ChannelError extends Error {
  /**
   * @param {string} reason an error code (constants.ErrorCode)
   * @param {string} detail text for people
   */
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = "ChannelError";
    this.reason = reason;
    this.detail = detail;
  }
}

/** @returns {Environment} the page's window and document, or nothing outside a browser */
export function browserEnvironment() {
  const win = typeof window === "undefined" ? null : window;
  const doc = typeof document === "undefined" ? null : document;
  return {
    online: () => (typeof navigator === "undefined" ? true : navigator.onLine !== false),
    subscribe(listener) {
      const online = () => listener("online");
      const offline = () => listener("offline");
      const visible = () => {
        if (doc?.visibilityState === "visible") listener("visible");
      };
      win?.addEventListener("online", online);
      win?.addEventListener("offline", offline);
      doc?.addEventListener("visibilitychange", visible);
      return () => {
        win?.removeEventListener("online", online);
        win?.removeEventListener("offline", offline);
        doc?.removeEventListener("visibilitychange", visible);
      };
    },
  };
}

/** @type {Clock} */
const realClock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(/** @type {any} */ (handle)),
};

/**
 * @template T
 * @typedef {object} Pending
 * @property {(value: T) => void} resolve
 * @property {(error: ChannelError) => void} reject
 * @property {string} text the frame, ready to send
 * @property {boolean} sent false while it waits in the buffer
 * @property {unknown} timer
 */

/** One WebSocket to one endpoint, shared by every channel that uses it. */
export class Socket {
  /**
   * @param {string} url the endpoint, `ws(s)://host/{base_url}api/channels/websocket`
   * @param {SocketOptions} [options]
   */
  constructor(url, options = {}) {
    const endpoint = new URL(url);
    if (options.token) endpoint.searchParams.set("token", options.token);
    this.url = endpoint.href;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.heartbeatInterval = options.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL * 1000;
    this.maxBackoff = options.maxBackoff ?? MAX_BACKOFF_MS;
    this.maxBuffered = options.maxBuffered ?? MAX_BUFFERED;
    this._WebSocket = options.WebSocket ?? /** @type {WebSocketFactory} */ (globalThis.WebSocket);
    this._clock = options.clock ?? realClock;
    this._random = options.random ?? Math.random;
    this._env = options.env ?? browserEnvironment();
    /** @type {ConnectionState} */
    this.state = "connecting";
    /** @type {WebSocketLike | null} */
    this._ws = null;
    this._nextRef = 1;
    /** @type {Map<string, Pending<any>>} */
    this._pending = new Map();
    /** @type {string[]} refs of requests waiting for a connection, oldest first */
    this._buffer = [];
    /** @type {Map<string, {topic: Topic, timer: unknown}>} joins waiting for their reply, by ref */
    this._joins = new Map();
    /** @type {Topic[]} joins that got a connection closed: sent one at a time, after the others */
    this._suspects = [];
    /** @type {Map<string, Topic>} */
    this._topics = new Map();
    /** @type {Set<(state: ConnectionState) => void>} */
    this._stateListeners = new Set();
    this._attempt = 0;
    /** @type {unknown} */
    this._reconnectTimer = null;
    /** @type {unknown} */
    this._heartbeatTimer = null;
    this._closed = false;
    this._unsubscribeEnv = this._env.subscribe((what) => this._onEnvironment(what));
    this._open();
  }

  /** Whether the WebSocket is open. */
  get connected() {
    return this.state === "connected";
  }

  /** Whether no channel uses this socket (every handle left). */
  get idle() {
    return this._topics.size === 0;
  }

  /**
   * Call `listener(state)` on every change of the connection state.
   * @param {(state: ConnectionState) => void} listener
   * @returns {() => void} removes the listener
   */
  onState(listener) {
    this._stateListeners.add(listener);
    return () => this._stateListeners.delete(listener);
  }

  /**
   * A handle on `topic`; call `join()` on it. Handles of one topic share one
   * subscription (the first handle's `params` are the join payload).
   * @param {string} topic
   * @param {Record<string, unknown>} [params] the join payload (`handle_joined`'s `message.payload`)
   */
  channel(topic, params = {}) {
    let state = this._topics.get(topic);
    if (!state) {
      state = new Topic(this, topic, params);
      this._topics.set(topic, state);
    }
    return new Channel(state);
  }

  /** Close for good: leave nothing to reconnect; pending requests fail with `unavailable`. */
  close() {
    this._closed = true;
    this._unsubscribeEnv();
    this._clock.clearTimeout(this._reconnectTimer);
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      detach(ws);
      ws.close(1000, "closed by the client");
    }
    this._failPending(true, "the connection was closed");
    for (const topic of this._topics.values()) topic._ended("the connection was closed");
    this._topics.clear();
    this._setState("closed");
  }

  // -- connection ----------------------------------------------------------------------------

  _open() {
    if (this._closed || this._ws) return;
    this._clock.clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      this._lost(String(error));
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (event) => {
      if (ws === this._ws && typeof event.data === "string") this._receive(event.data);
    };
    // Node's WebSocket reports a refused connection with an error event and no close.
    ws.onerror = () => {
      if (ws === this._ws && ws.readyState !== OPEN) this._lost("could not connect");
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._lost(`closed (${event?.code ?? "no code"})`, event?.code);
    };
  }

  /** @param {WebSocketLike} ws */
  _opened(ws) {
    if (ws !== this._ws) return;
    this._setState("connected");
    // Joins first: the server handles a connection's frames in order, so buffered
    // pushes reach topics that are joined again.
    const wanted = [...this._topics.values()].filter((topic) => topic.wanted);
    for (const topic of wanted) {
      if (topic.joinCloses === 0) this._sendJoin(topic);
    }
    this._suspects = wanted
      .filter((topic) => topic.joinCloses > 0)
      .sort((a, b) => a.joinCloses - b.joinCloses);
    this._sendSuspect();
    this._settled();
    for (const ref of this._buffer.splice(0)) {
      const pending = this._pending.get(ref);
      if (pending) {
        pending.sent = true;
        ws.send(pending.text);
      }
    }
    this._startHeartbeat(ws);
  }

  /**
   * @param {string} why
   * @param {number} [code] the close code
   */
  _lost(why, code) {
    const ws = this._ws;
    this._ws = null;
    if (ws) detach(ws);
    this._stopHeartbeat();
    const waiting = [...this._joins.values()];
    for (const { timer } of waiting) this._clock.clearTimeout(timer);
    this._joins.clear();
    this._suspects = [];
    if (code === CloseCode.SLOW_CONSUMER) this._joinsClosed(waiting.map(({ topic }) => topic));
    for (const topic of this._topics.values()) topic._disconnected();
    this._failPending(false, `connection lost (${why})`);
    if (this._closed) return;
    this._setState(this._env.online() ? "reconnecting" : "offline");
    const delay = this._backoff(this._attempt);
    this._attempt += 1;
    this._clock.clearTimeout(this._reconnectTimer);
    this._reconnectTimer = this._clock.setTimeout(() => this._open(), delay);
  }

  /**
   * The wait before try `attempt` (from 0): doubling, capped, and jittered between half
   * and all of it, so pages do not come back in lockstep.
   * @param {number} attempt
   */
  _backoff(attempt) {
    return Math.min(this.maxBackoff, BASE_BACKOFF_MS * 2 ** attempt) * (0.5 + this._random() / 2);
  }

  /**
   * The connection was closed as a slow consumer while these joins waited for their
   * reply: one of them is likely too big to receive. Each is retried alone from now on;
   * one whose join was the only one waiting MAX_JOIN_CLOSES times is given up.
   * @param {Topic[]} topics
   */
  _joinsClosed(topics) {
    for (const topic of topics) {
      topic.joinCloses += 1;
      if (topics.length === 1) topic.aloneCloses += 1;
      if (topic.aloneCloses >= MAX_JOIN_CLOSES) {
        topic._failed(
          new ChannelError(
            ErrorCode.UNAVAILABLE,
            `its join got the connection closed (slow consumer) ${topic.aloneCloses} times`,
          ),
        );
      }
    }
  }

  /** Join the next suspect topic once no other suspect's join is waiting. */
  _sendSuspect() {
    for (const { topic } of this._joins.values()) {
      if (topic.joinCloses > 0) return;
    }
    const next = this._suspects.shift();
    if (next?.wanted) this._sendJoin(next);
    else if (next) this._sendSuspect();
  }

  /** Every join of this connection was answered: it is healthy, the backoff starts over. */
  _settled() {
    if (this._joins.size === 0 && this._suspects.length === 0) this._attempt = 0;
  }

  /** @param {"online" | "offline" | "visible"} what */
  _onEnvironment(what) {
    if (this._closed) return;
    if (what === "offline") {
      if (this.connected) this._heartbeat(); // a dead connection shows up within `timeout`
      else this._setState("offline");
      return;
    }
    if (!this._ws) {
      this._attempt = 0;
      this._setState("reconnecting");
      this._open();
    } else if (what === "online" && this.connected) {
      this._heartbeat();
    }
  }

  /** @param {ConnectionState} state */
  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const listener of [...this._stateListeners]) {
      try {
        listener(state);
      } catch (error) {
        console.error("jupyter-channels: a state listener failed", error);
      }
    }
  }

  /** @param {WebSocketLike} ws */
  _startHeartbeat(ws) {
    if (this.heartbeatInterval <= 0) return;
    const beat = () => {
      if (ws !== this._ws) return;
      this._heartbeat();
      this._heartbeatTimer = this._clock.setTimeout(beat, this.heartbeatInterval);
    };
    this._heartbeatTimer = this._clock.setTimeout(beat, this.heartbeatInterval);
  }

  _stopHeartbeat() {
    this._clock.clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /** A heartbeat; no reply within `timeout` means the connection is dead. */
  _heartbeat() {
    const ws = this._ws;
    this.request({ event: Event.HEARTBEAT }, { buffer: false }).catch((error) => {
      if (ws === this._ws && error.reason === ErrorCode.TIMEOUT) {
        ws?.close(1000, "heartbeat timeout");
        this._lost("heartbeat timeout");
      }
    });
  }

  // -- frames --------------------------------------------------------------------------------

  /** @param {string} text */
  _receive(text) {
    if (text === PING_TEXT) return;
    /** @type {any} */
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      console.warn("jupyter-channels: a frame that is not JSON", text.slice(0, 200));
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.event) {
      case Event.REPLY: {
        const ref = String(frame.ref);
        if (this._joins.has(ref)) {
          this._joinAnswered(ref, frame);
          return;
        }
        const pending = this._pending.get(ref);
        if (!pending) return;
        this._settle(ref);
        const payload = frame.payload ?? {};
        const response = payload.response ?? {};
        if (payload.status === Status.OK) pending.resolve(response);
        else pending.reject(new ChannelError(response.reason ?? "error", response.detail ?? ""));
        return;
      }
      case Event.ERROR:
        console.warn("jupyter-channels: server error", frame.payload);
        return;
      default:
        this._topics.get(frame.topic)?._receive(frame);
    }
  }

  /** @param {Topic} topic */
  _sendJoin(topic) {
    const ws = this._ws;
    if (!ws || !this.connected) return;
    const ref = String(this._nextRef++);
    // A rejoin without a reply is retried like one answered `timeout`; a first join's
    // caller has its own timeout (and a late reply still joins).
    const timer =
      topic.epoch === null
        ? null
        : this._clock.setTimeout(() => {
            const detail = `no join reply within ${this.timeout / 1000} s`;
            this._joinAnswered(ref, {
              payload: { status: Status.ERROR, response: { reason: ErrorCode.TIMEOUT, detail } },
            });
          }, this.timeout);
    this._joins.set(ref, { topic, timer });
    topic.state = topic.epoch === null ? "joining" : "rejoining";
    ws.send(JSON.stringify({ event: Event.JOIN, topic: topic.name, ref, ...topic.joinFields() }));
  }

  /**
   * @param {string} ref
   * @param {Frame} reply
   */
  _joinAnswered(ref, reply) {
    const join = this._joins.get(ref);
    if (!join) return;
    this._joins.delete(ref);
    this._clock.clearTimeout(join.timer);
    join.topic._onJoinReply(reply);
    this._sendSuspect();
    this._settled();
  }

  /**
   * Send a frame with a fresh `ref`; resolves with the ok reply's `response`.
   * While disconnected the frame waits in the buffer (unless `buffer` is false).
   * @param {Frame} frame
   * @param {{timeout?: number, buffer?: boolean}} [options]
   * @returns {Promise<any>}
   */
  request(frame, { timeout, buffer = true } = {}) {
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new ChannelError(ErrorCode.UNAVAILABLE, "the connection is closed"));
        return;
      }
      const ref = String(this._nextRef++);
      const text = JSON.stringify({ ...frame, ref });
      const ws = this._ws;
      const now = ws !== null && this.connected && ws.readyState === OPEN;
      if (!now && (!buffer || this._buffer.length >= this.maxBuffered)) {
        const why = buffer ? `${this.maxBuffered} messages are waiting` : "not connected";
        reject(new ChannelError(ErrorCode.UNAVAILABLE, `disconnected, and ${why}`));
        return;
      }
      const wait = timeout ?? this.timeout;
      const timer = this._clock.setTimeout(() => {
        // A request that timed out while buffered is never sent later.
        this._settle(ref);
        reject(new ChannelError(ErrorCode.TIMEOUT, `no reply within ${wait / 1000} s`));
      }, wait);
      this._pending.set(ref, { resolve, reject, text, sent: now, timer });
      if (now) ws.send(text);
      else this._buffer.push(ref);
    });
  }

  /** @param {string} ref */
  _settle(ref) {
    const pending = this._pending.get(ref);
    if (!pending) return;
    this._clock.clearTimeout(pending.timer);
    this._pending.delete(ref);
    const index = this._buffer.indexOf(ref);
    if (index >= 0) this._buffer.splice(index, 1);
  }

  /**
   * Reject requests that were sent on a lost connection (their reply will never
   * come; they may or may not have been handled), and with `all` the buffered ones.
   * @param {boolean} all
   * @param {string} why
   */
  _failPending(all, why) {
    for (const [ref, pending] of [...this._pending]) {
      if (pending.sent || all) {
        this._settle(ref);
        pending.reject(new ChannelError(ErrorCode.UNAVAILABLE, why));
      }
    }
  }

  /** @param {Topic} topic */
  _forget(topic) {
    if (this._topics.get(topic.name) === topic) this._topics.delete(topic.name);
  }
}

/** @param {WebSocketLike} ws */
function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
}

/**
 * The subscription to one topic, shared by its Channel handles: the offset seen,
 * presence, the recent messages.
 */
class Topic {
  /**
   * @param {Socket} socket
   * @param {string} name
   * @param {Record<string, unknown>} params
   */
  constructor(socket, name, params) {
    this.socket = socket;
    this.name = name;
    this.params = params;
    /** The highest offset received; a rejoin asks for everything after it. */
    this.lastOffset = 0;
    /** @type {string | null} */
    this.epoch = null;
    this.recovered = true;
    /** Whether the server has this connection in the topic (a join reply came, ok). */
    this.joined = false;
    /** Whether this user may send to the topic (the last join reply said so). */
    this.canSend = true;
    /** @type {TopicState} */
    this.state = "joining";
    /** Connections closed as slow consumers while this topic's join waited. */
    this.joinCloses = 0;
    /** ... while it was the only join waiting: past MAX_JOIN_CLOSES the topic is given up. */
    this.aloneCloses = 0;
    /** Rejoins that failed in a row and were retried. */
    this._retries = 0;
    /** @type {unknown} */
    this._retryTimer = null;
    /** @type {Message[] | null} live messages held while a truncated reply is completed */
    this._held = null;
    /** Whether a handle wants to be in the topic: (re)joined on every connect. */
    this.wanted = false;
    /** The `history` of the first join, used until one join succeeded. */
    this.history = 0;
    /** @type {number | null} */
    this.since = null;
    /** @type {Members} */
    this.members = {};
    /** @type {Message[]} */
    this.messages = [];
    /** @type {Set<Channel>} */
    this.handles = new Set();
    /**
     * Handles waiting for the join reply.
     * @type {{options: {history?: number, since?: number}, resolve: (r: JoinResponse) => void, reject: (e: ChannelError) => void}[]}
     */
    this._waiters = [];
  }

  /** The optional fields of the join frame: `since` after a first join, else `history`. */
  joinFields() {
    /** @type {Frame} */
    const fields = { payload: this.params };
    if (this.epoch !== null) fields.since = this.lastOffset;
    else if (this.since !== null) fields.since = this.since;
    else if (this.history > 0) fields.history = this.history;
    return fields;
  }

  /**
   * @param {Channel} handle
   * @param {{history?: number, since?: number}} options
   * @returns {Promise<JoinResponse>}
   */
  join(handle, options) {
    this.handles.add(handle);
    if (this.joined) return Promise.resolve(this._answer(options));
    const wait = new Promise((resolve, reject) => this._waiters.push({ options, resolve, reject }));
    if (!this.wanted) {
      this.wanted = true;
      this.history = options.history ?? 0;
      this.since = options.since ?? null;
      this.socket._sendJoin(this);
    }
    return /** @type {Promise<JoinResponse>} */ (wait);
  }

  /**
   * A join response from what this page holds: for handles that join a topic
   * another handle joined first.
   * @param {{history?: number, since?: number}} options
   * @returns {JoinResponse}
   */
  _answer({ history = 0, since }) {
    const messages =
      since === undefined
        ? this.messages.slice(Math.max(0, this.messages.length - history))
        : this.messages.filter((m) => m.offset !== null && m.offset > since);
    return {
      offset: this.lastOffset,
      epoch: this.epoch,
      recovered: this.recovered,
      can_send: this.canSend,
      messages,
    };
  }

  /** @param {Frame} reply */
  _onJoinReply(reply) {
    const payload = /** @type {any} */ (reply.payload ?? {});
    const response = payload.response ?? {};
    if (!this.wanted) return; // left while the join was on its way
    if (payload.status !== Status.OK) {
      const error = new ChannelError(response.reason ?? "error", response.detail ?? "");
      const retryAfter = typeof response.retry_after === "number" ? response.retry_after : null;
      // A rejoin is retried; a first join only when the server said when (it is admitting
      // joins at its rate): otherwise its caller hears of the error and decides.
      const admitted = error.reason === ErrorCode.UNAVAILABLE && retryAfter !== null;
      if ((this.epoch !== null && RETRIED.has(error.reason)) || admitted) {
        this._retry(error, retryAfter);
      } else {
        this._failed(error);
      }
      return;
    }
    if (response.truncated && (this.epoch === null || response.epoch === this.epoch)) {
      const ws = this.socket._ws;
      const current = () => this.socket._ws === ws && this.wanted;
      this._held = [];
      this._complete(response).then(
        (full) => (current() ? this._accept(full) : (this._held = null)),
        () => (current() ? this._accept({ ...response, recovered: false }) : (this._held = null)),
      );
      return;
    }
    this._accept(response);
  }

  /**
   * A truncated join reply with what it left out. After `since` the reply holds the
   * oldest missed messages: the newer ones are asked for by joining again from the last
   * one received (`recovered` stays true only if the pages meet). Otherwise it holds
   * the newest: older ones are read with `history` pages, up to the `history` asked for.
   * @param {any} response
   * @returns {Promise<any>}
   */
  async _complete(response) {
    /** @type {Message[]} */
    let messages = [...(response.messages ?? [])];
    const since = this.epoch !== null ? this.lastOffset : this.since;
    if (since === null) {
      while (messages.length > 0 && messages.length < this.history) {
        const first = messages[0].offset;
        if (typeof first !== "number" || first <= 1) break;
        const limit = Math.min(this.history - messages.length, MAX_HISTORY_LIMIT);
        const payload = { before: first, limit };
        const older = await this._request({ event: Event.HISTORY, payload });
        if (!older.messages?.length) break;
        messages = [...older.messages, ...messages];
      }
      return { ...response, messages };
    }
    let last = response;
    let gapless = true;
    while (last.truncated && last.recovered !== false && messages.length > 0) {
      const reached = messages[messages.length - 1].offset;
      if (typeof reached !== "number") break;
      last = await this._request({ event: Event.JOIN, payload: this.params, since: reached });
      const page = last.messages ?? [];
      if (!page.length || page[0].offset !== reached + 1) {
        gapless = false; // retention moved past them while we read
        break;
      }
      messages = [...messages, ...page];
    }
    return { ...last, messages, recovered: last.recovered !== false && gapless };
  }

  /** @param {Frame} frame */
  _request(frame) {
    return this.socket.request({ ...frame, topic: this.name }, { buffer: false });
  }

  /**
   * Try the join again after `retryAfter` ms (the server's word, plus up to a quarter
   * of it so that a storm's clients do not come back together) or the backoff.
   * @param {ChannelError} error
   * @param {number | null} retryAfter
   */
  _retry(error, retryAfter) {
    const delay =
      retryAfter === null
        ? this.socket._backoff(this._retries)
        : retryAfter * (1 + this.socket._random() / 4);
    this._retries += 1;
    this.state = "retrying";
    const info = { reason: error.reason, detail: error.detail, delay };
    for (const handle of [...this.handles]) handle._emitRetry(info);
    this.socket._clock.clearTimeout(this._retryTimer);
    this._retryTimer = this.socket._clock.setTimeout(() => {
      this._retryTimer = null;
      if (this.wanted && !this.joined) this.socket._sendJoin(this);
    }, delay);
  }

  /** The connection is gone: not joined until the rejoin on the next one. */
  _disconnected() {
    this.joined = false;
    this._held = null;
    this.socket._clock.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this.wanted && this.epoch !== null) this.state = "rejoining";
  }

  /**
   * The join cannot succeed: end the subscription and tell whoever waits or listens.
   * @param {ChannelError} error
   */
  _failed(error) {
    this.wanted = false;
    this.socket._forget(this);
    for (const waiter of this._waiters.splice(0)) waiter.reject(error);
    this._ended(error.detail || error.reason);
  }

  /** @param {any} response an ok join reply's, complete */
  _accept(response) {
    const held = this._held ?? [];
    this._held = null;
    this.state = "joined";
    this._retries = this.joinCloses = this.aloneCloses = 0;
    const rejoin = this.epoch !== null;
    const reset = rejoin && response.epoch !== this.epoch;
    if (reset) {
      // A different history store: its offsets are not ours.
      this.lastOffset = 0;
      this.messages = [];
    }
    this.epoch = response.epoch ?? "";
    this.recovered = response.recovered !== false;
    // The server writes the field only to say no.
    this.canSend = response.can_send !== false;
    this.joined = true;
    /** @type {Message[]} */
    const messages = Array.isArray(response.messages) ? response.messages : [];
    for (const handle of this.handles) handle._emitJoin({ rejoin, reset, recovered: this.recovered });
    const fresh = messages.filter((m) => this._keep(m));
    if (typeof response.offset === "number") this.lastOffset = response.offset;
    if (rejoin) {
      for (const message of fresh) this._emit(message);
    }
    for (const waiter of this._waiters.splice(0)) waiter.resolve(this._answer(waiter.options));
    for (const message of held) this._receive(message);
  }

  /**
   * Record a message unless its offset was seen; returns whether it is new.
   * @param {Message} message
   */
  _keep(message) {
    // Ephemeral messages (typing) are passed on, never kept: nothing to recover later.
    if (message.ephemeral === true) return true;
    const offset = message.offset;
    if (typeof offset === "number") {
      if (offset <= this.lastOffset) return false;
      this.lastOffset = offset;
    }
    this.messages.push(message);
    if (this.messages.length > KEPT_MESSAGES) this.messages.splice(0, this.messages.length - KEPT_MESSAGES);
    return true;
  }

  /** @param {Message} message */
  _emit(message) {
    for (const handle of [...this.handles]) handle._emitMessage(message);
  }

  /** @param {any} frame */
  _receive(frame) {
    switch (frame.event) {
      case Event.MESSAGE:
        if (this._held) this._held.push(frame);
        else if (this.joined && this._keep(frame)) this._emit(frame);
        return;
      case Event.PRESENCE_STATE:
        this.members = {};
        for (const [user, entry] of Object.entries(frame.payload ?? {})) {
          this.members[user] = [...(/** @type {any} */ (entry)?.metas ?? [])];
        }
        break;
      case Event.PRESENCE_DIFF:
        this.members = applyDiff(this.members, frame.payload ?? {});
        break;
      case Event.CLOSE:
        this.wanted = false;
        this.socket._forget(this);
        this._ended(frame.payload?.reason ?? "closed by the server");
        return;
      default:
        return;
    }
    for (const handle of [...this.handles]) handle._emitPresence(this.members);
  }

  /** @param {string} reason */
  _ended(reason) {
    this.joined = false;
    this.state = "closed";
    this.socket._clock.clearTimeout(this._retryTimer);
    for (const waiter of this._waiters.splice(0)) {
      waiter.reject(new ChannelError(ErrorCode.UNAVAILABLE, reason));
    }
    for (const handle of [...this.handles]) handle._emitClose(reason);
    this.handles.clear();
  }

  /**
   * @param {Channel} handle
   * @param {number | undefined} timeout
   */
  async leave(handle, timeout) {
    this.handles.delete(handle);
    if (this.handles.size > 0 || !this.wanted) return;
    this.wanted = false;
    this.joined = false;
    this.state = "closed";
    this.socket._clock.clearTimeout(this._retryTimer);
    this.socket._forget(this);
    if (this.socket.connected) {
      await this.socket.request({ event: Event.LEAVE, topic: this.name }, { timeout, buffer: false });
    }
  }
}

/**
 * Apply a `presence_diff` payload (Phoenix Presence's joins/leaves) to `members`.
 * @param {Members} members
 * @param {{joins?: Record<string, {metas?: Meta[]}>, leaves?: Record<string, {metas?: Meta[]}>}} diff
 * @returns {Members}
 */
export function applyDiff(members, diff) {
  /** @type {Members} */
  const next = { ...members };
  for (const [user, entry] of Object.entries(diff.leaves ?? {})) {
    const gone = new Set((entry.metas ?? []).map((meta) => meta.phx_ref));
    const left = (next[user] ?? []).filter((meta) => !gone.has(meta.phx_ref));
    if (left.length) next[user] = left;
    else delete next[user];
  }
  for (const [user, entry] of Object.entries(diff.joins ?? {})) {
    const known = new Set((next[user] ?? []).map((meta) => meta.phx_ref));
    const fresh = (entry.metas ?? []).filter((meta) => !known.has(meta.phx_ref));
    next[user] = [...(next[user] ?? []), ...fresh];
  }
  return next;
}

/**
 * A handle on a topic: join it, push into it, listen to it, see who is here.
 * Listeners registered on a handle are removed when it leaves.
 */
export class Channel {
  /** @param {Topic} topic */
  constructor(topic) {
    this._topic = topic;
    this.topic = topic.name;
    /** @type {Map<string, Set<(message: Message) => void>>} */
    this._listeners = new Map();
    /** @type {Set<(members: Members) => void>} */
    this._presenceListeners = new Set();
    /** @type {Set<(info: {rejoin: boolean, reset: boolean, recovered: boolean}) => void>} */
    this._joinListeners = new Set();
    /** @type {Set<(reason: string) => void>} */
    this._closeListeners = new Set();
    /** @type {Set<(info: RetryInfo) => void>} */
    this._retryListeners = new Set();
    this._left = false;
  }

  /** Who is here: username -> one meta per connection. */
  get members() {
    return this._topic.members;
  }

  /** The highest offset this page received in the topic. */
  get lastOffset() {
    return this._topic.lastOffset;
  }

  /** Whether the last (re)join got every message since the previous one. */
  get recovered() {
    return this._topic.recovered;
  }

  /** Whether this user may send to the topic: false on a topic they may only read. */
  get canSend() {
    return this._topic.canSend;
  }

  /** Whether the topic is joined now (false while reconnecting). */
  get joined() {
    return this._topic.joined && this.socketConnected;
  }

  /**
   * `joining`, `joined`, `rejoining` (after a reconnect), `retrying` (the server could
   * not answer the rejoin: tried again with backoff) or `closed`.
   * @returns {TopicState}
   */
  get state() {
    return this._topic.state;
  }

  get socketConnected() {
    return this._topic.socket.connected;
  }

  /**
   * Join the topic. Resolves with the join reply's response, whose `messages` are the
   * newest `history` ones (or every one after `since`); `on` listeners see what
   * arrives after. Rejects with a ChannelError (`join_rejected`, `timeout`, ...).
   * The socket rejoins on every reconnect until `leave()`.
   * @param {{history?: number, since?: number, timeout?: number}} [options]
   * @returns {Promise<JoinResponse>}
   */
  join(options = {}) {
    if (this._left) return Promise.reject(new ChannelError(ErrorCode.NOT_JOINED, "left"));
    const socket = this._topic.socket;
    const wait = options.timeout ?? socket.timeout;
    return new Promise((resolve, reject) => {
      const timer = socket._clock.setTimeout(() => {
        reject(new ChannelError(ErrorCode.TIMEOUT, `no join reply within ${wait / 1000} s`));
      }, wait);
      this._topic.join(this, options).then(
        (response) => {
          socket._clock.clearTimeout(timer);
          resolve(response);
        },
        (error) => {
          socket._clock.clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /**
   * Send a message into the topic. Resolves with the ok reply's response
   * (`{offset}` once stored); rejects with a ChannelError on an error reply, after
   * `timeout` ms (default 10 s), or when the connection is lost after sending.
   * While disconnected the message waits in the socket's buffer.
   *
   * `ephemeral: true` (a `typing` frame): the server sends it to the topic's
   * subscribers of the moment with `offset: null` and never stores it; the response
   * has no offset. It is never buffered: while disconnected it is refused at once
   * (`unavailable`), since it would be stale by the time it went out.
   * @param {string} subject
   * @param {unknown} [payload]
   * @param {{timeout?: number, ephemeral?: boolean}} [options]
   * @returns {Promise<Record<string, unknown>>}
   */
  push(subject, payload = {}, options = {}) {
    if (this._left || !this._topic.wanted) {
      return Promise.reject(new ChannelError(ErrorCode.NOT_JOINED, `not joined to '${this.topic}'`));
    }
    const { ephemeral = false, ...rest } = options;
    /** @type {Record<string, unknown>} */
    const frame = { event: Event.MESSAGE, topic: this.topic, subject, payload };
    if (ephemeral) frame.ephemeral = true;
    return this._topic.socket.request(frame, ephemeral ? { ...rest, buffer: false } : rest);
  }

  /**
   * Replace the text of the `text` message at `offset` (an `edit` message: the
   * server accepts it from the message's author or a moderator, else `unauthorized`).
   * @param {number} offset
   * @param {string} text
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Record<string, unknown>>} `{offset}` of the edit
   */
  edit(offset, text, options = {}) {
    return this.push(Subject.EDIT, { offset, text }, options);
  }

  /**
   * Delete the `text` message at `offset` (a `delete` message; as `edit`).
   * @param {number} offset
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Record<string, unknown>>} `{offset}` of the delete
   */
  delete(offset, options = {}) {
    return this.push(Subject.DELETE, { offset }, options);
  }

  /**
   * Refuse `user`'s messages in this topic for `seconds` (0 lifts it): moderators only.
   * @param {string} user
   * @param {number} seconds
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Record<string, unknown>>} `{offset}` of the `mute` message
   */
  mute(user, seconds, options = {}) {
    return this.push(Subject.MUTE, { user, seconds }, options);
  }

  /**
   * The newest `limit` messages with an offset below `before`, oldest first.
   * @param {{limit?: number, before?: number, timeout?: number}} [options]
   * @returns {Promise<Message[]>}
   */
  async history({ limit, before, timeout } = {}) {
    /** @type {Record<string, number>} */
    const payload = {};
    if (limit !== undefined) payload.limit = limit;
    if (before !== undefined) payload.before = before;
    const response = await this._topic.socket.request(
      { event: Event.HISTORY, topic: this.topic, payload },
      { timeout, buffer: false },
    );
    return response.messages ?? [];
  }

  /**
   * Call `callback(message)` for each message with `subject` (`"*"`: every one).
   * @param {string} subject
   * @param {(message: Message) => void} callback
   * @returns {() => void} removes the listener
   */
  on(subject, callback) {
    let set = this._listeners.get(subject);
    if (!set) this._listeners.set(subject, (set = new Set()));
    set.add(callback);
    return () => set.delete(callback);
  }

  /**
   * Call `callback(members)` whenever presence changes.
   * @param {(members: Members) => void} callback
   * @returns {() => void}
   */
  onPresence(callback) {
    this._presenceListeners.add(callback);
    return () => this._presenceListeners.delete(callback);
  }

  /**
   * Call `callback(info)` on every ok join reply, before its messages are delivered:
   * `rejoin` after a reconnect, `reset` when the history store changed (offsets
   * start over: drop what you show), `recovered` false when messages were lost.
   * @param {(info: {rejoin: boolean, reset: boolean, recovered: boolean}) => void} callback
   * @returns {() => void}
   */
  onJoin(callback) {
    this._joinListeners.add(callback);
    return () => this._joinListeners.delete(callback);
  }

  /**
   * Call `callback(reason)` when the subscription ends without `leave()`: the join
   * was refused, or the server closed it.
   * @param {(reason: string) => void} callback
   * @returns {() => void}
   */
  onClose(callback) {
    this._closeListeners.add(callback);
    return () => this._closeListeners.delete(callback);
  }

  /**
   * Call `callback({reason, detail, delay})` when a rejoin failed with an error that may
   * pass (`unavailable`, `timeout`, `rate_limited`) and is tried again in `delay` ms.
   * @param {(info: RetryInfo) => void} callback
   * @returns {() => void}
   */
  onRetry(callback) {
    this._retryListeners.add(callback);
    return () => this._retryListeners.delete(callback);
  }

  /**
   * Leave: the topic is left on the server once no handle of this page holds it.
   * @param {{timeout?: number}} [options]
   */
  async leave({ timeout } = {}) {
    if (this._left) return;
    this._left = true;
    this._clearListeners();
    await this._topic.leave(this, timeout);
  }

  _clearListeners() {
    this._listeners.clear();
    this._presenceListeners.clear();
    this._joinListeners.clear();
    this._closeListeners.clear();
    this._retryListeners.clear();
  }

  /** @param {RetryInfo} info */
  _emitRetry(info) {
    for (const callback of [...this._retryListeners]) guard(() => callback(info));
  }

  /** @param {Message} message */
  _emitMessage(message) {
    const subject = message.subject;
    for (const key of [subject, "*"]) {
      for (const callback of [...(this._listeners.get(key) ?? [])]) {
        guard(() => callback(message));
      }
    }
  }

  /** @param {Members} members */
  _emitPresence(members) {
    for (const callback of [...this._presenceListeners]) guard(() => callback(members));
  }

  /** @param {{rejoin: boolean, reset: boolean, recovered: boolean}} info */
  _emitJoin(info) {
    for (const callback of [...this._joinListeners]) guard(() => callback(info));
  }

  /** @param {string} reason */
  _emitClose(reason) {
    const listeners = [...this._closeListeners];
    this._left = true;
    this._clearListeners();
    for (const callback of listeners) guard(() => callback(reason));
  }
}

/** A listener's exception is logged; delivery to the others goes on. @param {() => void} fn */
function guard(fn) {
  try {
    fn();
  } catch (error) {
    console.error("jupyter-channels: a listener failed", error);
  }
}

const REGISTRY = Symbol.for("jupyter_channels.sockets.v1");

/**
 * The page's socket for `url`, made on first use. Shared through `globalThis`, so
 * every widget on the page (each may load its own copy of this module) uses one
 * WebSocket per endpoint.
 * @param {string} url
 * @param {SocketOptions} [options] used when the socket is made
 * @returns {Socket}
 */
export function getSocket(url, options = {}) {
  const global = /** @type {any} */ (globalThis);
  /** @type {Map<string, Socket>} */
  const sockets = (global[REGISTRY] ??= new Map());
  let socket = sockets.get(url);
  if (!socket || socket.state === "closed") {
    socket = new Socket(url, options);
    sockets.set(url, socket);
  }
  return socket;
}
