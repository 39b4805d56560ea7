// Test doubles for the client: a WebSocket whose server side the test plays, a
// clock the test advances, and an environment that goes offline on demand.

/** A timer queue: nothing runs until `tick`. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this._next = 1;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.timers = new Map();
  }

  /**
   * @param {() => void} fn
   * @param {number} ms
   */
  setTimeout(fn, ms) {
    const id = this._next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  /** @param {unknown} id */
  clearTimeout(id) {
    this.timers.delete(/** @type {number} */ (id));
  }

  /**
   * Advance by `ms`, running due timers in time order (ties: in the order they were set).
   * @param {number} ms
   */
  tick(ms) {
    const end = this.now + ms;
    for (;;) {
      /** @type {number | null} */
      let id = null;
      for (const [key, timer] of this.timers) {
        if (timer.at > end) continue;
        const best = id === null ? undefined : this.timers.get(id);
        if (best === undefined || timer.at < best.at) id = key;
      }
      if (id === null) break;
      const timer = /** @type {{at: number, fn: () => void}} */ (this.timers.get(id));
      this.timers.delete(id);
      this.now = timer.at;
      timer.fn();
    }
    this.now = end;
  }
}

/** @typedef {Record<string, any>} Frame */

/** Every socket made, newest last; `FakeWebSocket.last` is the current one. */
export class FakeWebSocket {
  /** @type {FakeWebSocket[]} */
  static made = [];

  static reset() {
    FakeWebSocket.made = [];
  }

  static get last() {
    const ws = FakeWebSocket.made.at(-1);
    if (!ws) throw new Error("no WebSocket was made");
    return ws;
  }

  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** @type {Frame[]} frames the client sent, parsed */
    this.sent = [];
    /** @type {((event: any) => void) | null} */
    this.onopen = null;
    /** @type {((event: any) => void) | null} */
    this.onclose = null;
    /** @type {((event: any) => void) | null} */
    this.onerror = null;
    /** @type {((event: {data: unknown}) => void) | null} */
    this.onmessage = null;
    this.closedByClient = false;
    FakeWebSocket.made.push(this);
  }

  /** @param {string} data */
  send(data) {
    if (this.readyState !== 1) throw new Error("send on a WebSocket that is not open");
    this.sent.push(JSON.parse(data));
  }

  close() {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // -- the server side -------------------------------------------------------------------------

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** The connection dropped (or was refused before it opened). */
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }

  /** @param {Frame | string} frame */
  receive(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  /**
   * The frames sent with `event` (and the given fields).
   * @param {string} event
   * @param {Frame} [fields]
   */
  sentFrames(event, fields = {}) {
    return this.sent.filter(
      (f) => f.event === event && Object.entries(fields).every(([k, v]) => f[k] === v),
    );
  }

  /** @param {string} event @param {Frame} [fields] */
  lastSent(event, fields = {}) {
    const frame = this.sentFrames(event, fields).at(-1);
    if (!frame) throw new Error(`no ${event} frame was sent`);
    return frame;
  }

  /**
   * Answer a frame the client sent with an ok reply.
   * @param {Frame} frame
   * @param {Frame} [response]
   */
  ok(frame, response = {}) {
    this.receive({
      event: "reply",
      topic: frame.topic,
      ref: frame.ref,
      payload: { status: "ok", response },
    });
  }

  /**
   * @param {Frame} frame
   * @param {string} reason
   * @param {string} [detail]
   */
  error(frame, reason, detail = "") {
    this.receive({
      event: "reply",
      topic: frame.topic,
      ref: frame.ref,
      payload: { status: "error", response: { reason, detail } },
    });
  }
}

/** An environment whose online/offline/visible events the test fires. */
export class FakeEnvironment {
  constructor() {
    this.isOnline = true;
    /** @type {Set<(what: "online" | "offline" | "visible") => void>} */
    this.listeners = new Set();
  }

  online() {
    return this.isOnline;
  }

  /** @param {(what: "online" | "offline" | "visible") => void} listener */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** @param {"online" | "offline" | "visible"} what */
  fire(what) {
    if (what !== "visible") this.isOnline = what === "online";
    for (const listener of this.listeners) listener(what);
  }
}

/**
 * A stored message frame, as the server sends it.
 * @param {string} topic
 * @param {number | null} offset
 * @param {string} [text]
 */
export function message(topic, offset, text = `m${offset}`) {
  return {
    event: "message",
    topic,
    subject: "text",
    payload: { text },
    offset,
    ts: 1767225600000 + (offset ?? 0),
    from: { id: "c1", user: "ada", name: "Ada", kind: "browser" },
  };
}

/** Let promise callbacks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
