// The two transports under the one client API of client.js.
//
// - direct: the page's own WebSocket to a channels endpoint (`getSocket(url)`).
// - kernel: `new Socket("kernel://...", {WebSocket: kernelWebSocket(kernel)})`. Frames go
//   to the widget's kernel over anywidget's custom messages and the kernel relays them on
//   its own connection (src/jupyter_channels/kernel_relay.py). Everything above (join,
//   rejoin with `since`, dedupe by offset, buffering, presence) is the same client code.
//
// The relay's custom messages are `{kind: "relay", link, op, ...}`: the page sends
// `open`, `frames` (`texts`) and `close`, each with a `seq` the kernel acknowledges
// (`ack`) as soon as its main thread sees it; the kernel sends `open`, `frames` and
// `close` (`reason`). A message unacknowledged for BUSY_AFTER_MS means the kernel is
// busy running a cell: what the page sent waits in the kernel's queue, nothing is lost.

/** @typedef {import("./client.js").Socket} Socket */
/** @typedef {import("./client.js").WebSocketFactory} WebSocketFactory */
/**
 * How the page talks to its kernel: anywidget's model, or a fake in the unit tests.
 * @typedef {object} KernelLink
 * @property {(message: Record<string, unknown>) => void} send
 * @property {(listener: (message: any) => void) => () => void} subscribe
 */
/**
 * @typedef {object} KernelOptions
 * @property {(busy: boolean) => void} [onBusy] the kernel stopped (or resumed) answering
 * @property {(reason: string) => void} [onError] the kernel closed the link, saying why
 * @property {() => string} [newId] a link id (random by default)
 * @property {import("./client.js").Clock} [clock] timers (the page's by default)
 * @property {() => number} [now] ms (Date.now by default)
 */

/** A message the kernel has not acknowledged for this long means it is busy. */
export const BUSY_AFTER_MS = 1000;

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

/** @param {{send: (m: any) => void, on: (e: string, f: (m: any) => void) => void, off: (e: string, f: (m: any) => void) => void}} model */
export function modelKernel(model) {
  /** @type {KernelLink} */
  const kernel = {
    send: (message) => model.send(message),
    subscribe(listener) {
      /** @param {any} message */
      const handler = (message) => listener(message);
      model.on("msg:custom", handler);
      return () => model.off("msg:custom", handler);
    },
  };
  return kernel;
}

function randomId() {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A WebSocket class (as client.js's Socket takes one) whose connections are relay links
 * through `kernel`. `onBusy` is shared by every link it makes.
 * @param {KernelLink} kernel
 * @param {KernelOptions} [options]
 * @returns {WebSocketFactory}
 */
export function kernelWebSocket(kernel, options = {}) {
  const onBusy = options.onBusy ?? (() => {});
  const onError = options.onError ?? (() => {});
  const newId = options.newId ?? randomId;
  const now = options.now ?? Date.now;
  const clock = options.clock ?? {
    setTimeout: (/** @type {() => void} */ fn, /** @type {number} */ ms) => setTimeout(fn, ms),
    clearTimeout: (/** @type {unknown} */ handle) => clearTimeout(/** @type {any} */ (handle)),
  };
  let busy = false;
  /** @param {boolean} value */
  const setBusy = (value) => {
    if (value === busy) return;
    busy = value;
    onBusy(value);
  };

  class KernelWebSocket {
    /** @param {string} _url */
    constructor(_url) {
      this.readyState = CONNECTING;
      this.link = newId();
      /** @type {((event: any) => void) | null} */
      this.onopen = null;
      /** @type {((event: any) => void) | null} */
      this.onclose = null;
      /** @type {((event: any) => void) | null} */
      this.onerror = null;
      /** @type {((event: {data: unknown}) => void) | null} */
      this.onmessage = null;
      this._seq = 0;
      /** @type {Map<number, number>} seq -> when it was sent */
      this._unacked = new Map();
      /** @type {string[]} frames of this task, sent together */
      this._out = [];
      /** @type {unknown} */
      this._busyTimer = null;
      this._off = kernel.subscribe((message) => this._receive(message));
      this._post({ op: "open" });
    }

    /** @param {string} data */
    send(data) {
      if (this.readyState !== OPEN) throw new Error("the kernel link is not open");
      this._out.push(data);
      if (this._out.length === 1) queueMicrotask(() => this._flush());
    }

    /**
     * @param {number} [code]
     * @param {string} [reason]
     */
    close(code = 1000, reason = "") {
      if (this.readyState === CLOSED) return;
      this._flush();
      this._post({ op: "close" });
      this._closed(code, reason);
    }

    _flush() {
      if (!this._out.length || this.readyState !== OPEN) return;
      const texts = this._out.splice(0);
      this._post({ op: "frames", texts });
    }

    /** @param {Record<string, unknown>} message */
    _post(message) {
      const seq = ++this._seq;
      this._unacked.set(seq, now());
      kernel.send({ kind: "relay", link: this.link, seq, ...message });
      this._watch();
    }

    /** Check, BUSY_AFTER_MS after the oldest unacknowledged message, whether it still is. */
    _watch() {
      if (this._busyTimer !== null || this._unacked.size === 0) return;
      const oldest = Math.min(...this._unacked.values());
      const wait = Math.max(0, oldest + BUSY_AFTER_MS - now());
      this._busyTimer = clock.setTimeout(() => {
        this._busyTimer = null;
        if (this.readyState === CLOSED) return;
        if (this._unacked.size === 0) return;
        // Busy until everything is acknowledged; else look again when the oldest is due.
        if (now() - Math.min(...this._unacked.values()) >= BUSY_AFTER_MS) setBusy(true);
        else this._watch();
      }, wait);
    }

    /** @param {any} message */
    _receive(message) {
      if (!message || message.kind !== "relay" || message.link !== this.link) return;
      switch (message.op) {
        case "ack":
          this._unacked.delete(message.seq);
          if (this._unacked.size === 0) {
            if (this._busyTimer !== null) clock.clearTimeout(this._busyTimer);
            this._busyTimer = null;
            setBusy(false);
          }
          return;
        case "open":
          if (this.readyState !== CONNECTING) return;
          this.readyState = OPEN;
          this.onopen?.({});
          return;
        case "frames":
          for (const text of Array.isArray(message.texts) ? message.texts : []) {
            if (this.readyState !== OPEN) return;
            this.onmessage?.({ data: text });
          }
          return;
        case "close": {
          const reason = typeof message.reason === "string" ? message.reason : "";
          if (reason) onError(reason);
          this._closed(1011, reason);
          return;
        }
        default:
      }
    }

    /**
     * @param {number} code
     * @param {string} reason
     */
    _closed(code, reason) {
      if (this.readyState === CLOSED) return;
      const wasOpen = this.readyState === OPEN;
      this.readyState = CLOSED;
      this._off();
      if (this._busyTimer !== null) clock.clearTimeout(this._busyTimer);
      this._busyTimer = null;
      this._unacked.clear();
      setBusy(false);
      if (!wasOpen) this.onerror?.({});
      this.onclose?.({ code, reason });
    }
  }
  return KernelWebSocket;
}

/**
 * Whether `socket` connects: true once it is connected, false when its first attempt
 * fails or nothing happens within `ms`.
 * @param {Socket} socket
 * @param {number} ms
 * @returns {Promise<boolean>}
 */
export function firstConnection(socket, ms) {
  if (socket.state === "connected") return Promise.resolve(true);
  if (socket.state !== "connecting") return Promise.resolve(false);
  return new Promise((resolve) => {
    /** @param {boolean} ok */
    const done = (ok) => {
      clearTimeout(timer);
      off();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    const off = socket.onState((state) => {
      if (state === "connected") done(true);
      else if (state !== "connecting") done(false);
    });
  });
}
