// The front end of jupyter_channels.ChannelWidget (an anywidget module).
//
// `initialize` runs once per widget model, before (and without) any view: it
// connects and joins the topic, so the widget is live even when it is not shown.
// `render` draws one view of it; every view of a model shows the same feed.
//
// Every received string is put on the page as text (textContent, attributes
// through the DOM API), never parsed as HTML; a shared cell is shown as code and
// never run.

import { ChannelError, Socket, getSocket } from "./client.js";
import { DEFAULT_HISTORY_LIMIT, DEFAULT_TIMEOUT_MS, ErrorCode, Subject, WS_PATH } from "./constants.js";
import { hubEndpoint, signIn } from "./signin.js";
import { firstConnection, kernelWebSocket, modelKernel } from "./transports.js";

/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./client.js").Members} Members */
/** @typedef {import("./client.js").Channel} Channel */

/** @typedef {"auto" | "direct" | "kernel"} Transport */
/** @typedef {{topic: string, transport: Transport, _room: string, _endpoint_from_kernel: boolean}} Model */
/** @typedef {import("@anywidget/types").AnyModel<Model>} AnyModel */
/**
 * Where the page connects; `login` (from the kernel, under JupyterHub) is the path of the
 * channels service's login endpoint, where the page signs in before connecting.
 * @typedef {{url: string, token: string, login?: string}} Endpoint
 */

/** The compose box's note on a topic this user may read but not send to. */
export const READ_ONLY_NOTE = "read-only: you may read this topic but not send to it";

/**
 * The header's line for a join the server refused: the topic, the reason code and the
 * server's detail (which, for topic permissions, names the rule).
 * @param {string} topic
 * @param {{reason: string, detail: string}} refusal
 */
export function refusalLine(topic, { reason, detail }) {
  return detail ? `cannot join ${topic} (${reason}): ${detail}` : `cannot join ${topic} (${reason})`;
}

/** @type {Set<string>} errors of a join that say the topic is not for this user: shown in the header */
const REFUSALS = new Set([ErrorCode.UNAUTHORIZED, ErrorCode.JOIN_REJECTED, ErrorCode.UNMATCHED_TOPIC]);

/** The header's note beside the link that signs in to a channels service under JupyterHub. */
export const SIGN_IN_NOTE = "the channels service needs you to sign in; this widget connects once you have";
/** How often a widget that is not signed in tries again (also whenever the window regains focus). */
const SIGN_IN_RETRY_MS = 5_000;

/** The header's words while the kernel relays and does not answer (it runs a cell). */
export const KERNEL_BUSY = "kernel busy, messages wait";
/** How long `auto` waits for a direct connection before relaying through the kernel. */
const DIRECT_PROBE_MS = DEFAULT_TIMEOUT_MS;
/**
 * How long a request through the kernel waits for its reply: a busy kernel holds it
 * until its cell ends, and then sends it.
 */
const KERNEL_TIMEOUT_MS = 300_000;

/**
 * What a widget forced to "direct" shows when the page cannot connect.
 * @param {string} url
 */
export function unreachableLine(url) {
  return `cannot connect to ${url} from this page; ChannelWidget(..., transport="kernel") relays through the kernel`;
}

/** How a notice about a rejoin being retried starts (it goes once the topic is joined). */
const RETRY_NOTICE = "cannot rejoin";
/** Messages shown when a topic is joined. */
export const HISTORY_ON_JOIN = DEFAULT_HISTORY_LIMIT;
/** The feed keeps at most this many messages on the page. */
const MAX_SHOWN = 500;
/** Longest text of one output or JSON payload shown; the rest is cut. */
const MAX_TEXT = 20_000;
/** Outputs of a shared cell shown at most. */
const MAX_OUTPUTS = 20;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** The state line's words for the socket's states, and the topic's while it is not joined. */
const STATE_LABELS = {
  connecting: "connecting",
  connected: "connected",
  reconnecting: "reconnecting",
  offline: "offline",
  closed: "closed",
  "signed-out": "not signed in",
  joining: "joining",
  rejoining: "rejoining",
  retrying: "retrying",
};

/**
 * The channels endpoint of the Jupyter page this runs in, from `#jupyter-config-data`
 * (JupyterLab and Notebook 7 write it); null elsewhere (VS Code, a static page).
 * The same-origin login cookie authenticates; a token in the config is used too.
 * @param {Document} doc
 * @returns {Endpoint | null}
 */
export function pageEndpoint(doc) {
  const element = doc.getElementById("jupyter-config-data");
  if (!element) return null;
  /** @type {any} */
  let config;
  try {
    config = JSON.parse(element.textContent || "{}");
  } catch {
    return null;
  }
  const base = new URL(config.baseUrl || "/", doc.baseURI);
  const ws = config.wsUrl ? new URL(config.wsUrl, base) : new URL(base.href);
  if (!config.wsUrl) ws.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  if (!ws.pathname.endsWith("/")) ws.pathname += "/";
  return { url: new URL(WS_PATH, ws).href, token: typeof config.token === "string" ? config.token : "" };
}

/**
 * Ask the kernel side for an endpoint (a URL and token found by the Python client),
 * through a custom message, so the token never lands in the saved widget state.
 * A busy kernel answers late: after `DEFAULT_TIMEOUT_MS`, `onSlow` is called and the
 * wait goes on.
 * @param {AnyModel} model
 * @param {() => void} onSlow
 * @returns {Promise<Endpoint>}
 */
export function kernelEndpoint(model, onSlow) {
  return new Promise((resolve, reject) => {
    const slow = setTimeout(onSlow, DEFAULT_TIMEOUT_MS);
    /** @param {any} msg */
    const handler = (msg) => {
      if (!msg || msg.kind !== "endpoint") return;
      clearTimeout(slow);
      model.off("msg:custom", handler);
      if (typeof msg.url === "string" && msg.url) {
        /** @type {Endpoint} */
        const endpoint = { url: msg.url, token: msg.token || "" };
        if (typeof msg.login === "string" && msg.login) endpoint.login = msg.login;
        resolve(endpoint);
      } else {
        reject(new Error(msg.error || "the kernel found no Jupyter server"));
      }
    };
    model.on("msg:custom", handler);
    model.send({ kind: "endpoint" });
  });
}

/**
 * Ask the kernel side something through a custom message and wait for the answer of
 * the same `kind` (the kernel answers when it is idle: a busy kernel answers late).
 * @param {AnyModel} model
 * @param {Record<string, unknown>} question
 * @returns {Promise<any>}
 */
function askKernel(model, question) {
  return new Promise((resolve) => {
    /** @param {any} msg */
    const handler = (msg) => {
      if (!msg || msg.kind !== question.kind) return;
      model.off("msg:custom", handler);
      resolve(msg);
    };
    model.on("msg:custom", handler);
    model.send(question);
  });
}

/**
 * What views draw; one per model.
 * @typedef {object} View
 * @property {() => void} reset the topic changed or history restarted: redraw the feed
 * @property {(message: Message) => void} append
 * @property {() => void} update header, presence and notice
 */

/** The live state of one widget model: its channel, feed, members and connection state. */
class Room {
  /** @param {AnyModel} model */
  constructor(model) {
    this.model = model;
    this.topic = model.get("topic");
    /** @type {Socket | null} */
    this.socket = null;
    /** @type {Channel | null} */
    this.channel = null;
    /** @type {Message[]} */
    this.feed = [];
    /** @type {Members} */
    this.members = {};
    /** @type {string} */
    this.state = "connecting";
    /** A problem to show: a join that failed, a message that was not sent. */
    this.notice = "";
    /** @type {{reason: string, detail: string} | null} the server refused the join */
    this.refusal = null;
    /** The login URL to open while the page is not signed in to the channels service, else "". */
    this.signInUrl = "";
    /** @type {(() => void) | null} ends the wait before the next sign-in attempt */
    this._wake = null;
    /** Whether this user may send to the topic (false: read-only, from the join reply). */
    this.canSend = true;
    /** @type {"direct" | "kernel" | null} how the page reaches the channels, once it does */
    this.transport = null;
    /** Whether the kernel relaying the frames has not answered for a while (it runs a cell). */
    this.kernelBusy = false;
    /** Why the transport cannot connect ("" when it can). */
    this.transportError = "";
    /** @type {Set<View>} */
    this.views = new Set();
    /** @type {(() => void)[]} */
    this._cleanup = [];
    this._disposed = false;
    this._generation = 0;
    this._onTopic = () => this.switchTopic(this.model.get("topic"));
    model.on("change:topic", this._onTopic);
  }

  async start() {
    try {
      await this._connect();
    } catch (error) {
      this.state = "offline";
      this.notice = `cannot connect: ${describe(error)}`;
      this._update();
    }
  }

  async _connect() {
    /** @type {Transport} */
    const transport = this.model.get("transport") || "auto";
    if (transport === "kernel") return this._useKernel();
    // The kernel side says when the channels are not the page's own server's (a
    // widget given a url, a server pointing at a channels service).
    const fromKernel = Boolean(this.model.get("_endpoint_from_kernel"));
    const own = fromKernel ? null : pageEndpoint(document);
    if (own && (transport === "direct" || (await this._reaches(own)))) {
      return this._useDirect(own.url, own.token, transport);
    }
    if (this._disposed) return;
    const endpoint = await kernelEndpoint(this.model, () => {
      this.notice = "waiting for the kernel to tell where the server is";
      this._update();
    });
    if (this._disposed) return;
    this.notice = "";
    let url = endpoint.url;
    if (endpoint.login) {
      // Under JupyterHub: the page reaches the service through the hub's proxy, on its
      // own origin, with the service's OAuth cookie.
      const hub = hubEndpoint({ url, login: endpoint.login }, window.location.href);
      if (!hub) throw new Error(`cannot sign in to ${url} from this page`);
      url = hub.url;
      if (!(await this._signIn(hub.login))) return;
      return this._useDirect(url, endpoint.token, transport);
    }
    if (transport === "direct" || (await this._reaches(endpoint))) {
      return this._useDirect(url, endpoint.token, transport);
    }
    if (this._disposed) return;
    return this._useKernel();
  }

  /**
   * Whether the page connects to `endpoint` itself; a socket that does not is closed
   * unless another widget uses it.
   * @param {Endpoint} endpoint
   */
  async _reaches(endpoint) {
    const socket = getSocket(endpoint.url, { token: endpoint.token });
    const ok = await firstConnection(socket, DIRECT_PROBE_MS);
    if (!ok && socket.idle) socket.close();
    return ok;
  }

  /**
   * Use the page's own WebSocket to `url` (shared by the page's widgets).
   * @param {string} url
   * @param {string} token
   * @param {Transport} transport
   */
  async _useDirect(url, token, transport) {
    const socket = getSocket(url, { token });
    this._useSocket(socket, "direct");
    if (transport === "direct") {
      firstConnection(socket, DIRECT_PROBE_MS).then((ok) => {
        if (ok || this._disposed || this.socket !== socket) return;
        this.transportError = unreachableLine(url);
        this._update();
      });
    }
    await this.switchTopic(this.topic);
  }

  /** Relay every frame through the kernel: the page needs no network of its own. */
  async _useKernel() {
    const WebSocket = kernelWebSocket(modelKernel(this.model), {
      onBusy: (busy) => {
        this.kernelBusy = busy;
        this._update();
      },
      onError: (reason) => {
        this.transportError = `cannot connect through the kernel: ${reason}`;
        this._update();
      },
    });
    // A socket of this widget's own: its frames go through this model's custom messages.
    const socket = new Socket("kernel://relay/", { WebSocket, timeout: KERNEL_TIMEOUT_MS });
    this._useSocket(socket, "kernel");
    // The page is going away: tell the kernel while the page can still send (a page
    // that stays after all reconnects, on a new link, rejoining with `since`).
    const leave = () => socket._ws?.close(1001, "the page is going away");
    for (const event of ["beforeunload", "pagehide"]) {
      window.addEventListener(event, leave);
      this._cleanup.push(() => window.removeEventListener(event, leave));
    }
    await this.switchTopic(this.topic);
  }

  /**
   * @param {Socket} socket
   * @param {"direct" | "kernel"} transport
   */
  _useSocket(socket, transport) {
    this.socket = socket;
    this.transport = transport;
    this.state = socket.state;
    this._cleanup.push(
      socket.onState((state) => {
        this.state = state;
        if (state === "connected") this.transportError = "";
        this._update();
      }),
    );
    this._update();
  }

  /**
   * Sign in to the channels service, again and again until it works: while it does
   * not, every view shows a link that signs in in a new tab.
   * @param {string} loginUrl
   * @returns {Promise<boolean>} signed in (false: disposed first)
   */
  async _signIn(loginUrl) {
    for (;;) {
      const user = await signInOnce(loginUrl);
      if (this._disposed) return false;
      if (user) {
        this.signInUrl = "";
        this.state = "connecting";
        this._update();
        return true;
      }
      if (!this.signInUrl) {
        this.signInUrl = loginUrl;
        this.state = "signed-out";
        this._update();
      }
      await this._nextSignIn();
      if (this._disposed) return false;
    }
  }

  /** Wait for the window to regain focus, `SIGN_IN_RETRY_MS`, or disposal. */
  _nextSignIn() {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        window.removeEventListener("focus", wake);
        this._wake = null;
        resolve(undefined);
      };
      const timer = setTimeout(wake, SIGN_IN_RETRY_MS);
      window.addEventListener("focus", wake);
      this._wake = wake;
    });
  }

  /** @param {string} topic */
  async switchTopic(topic) {
    const generation = ++this._generation;
    const previous = this.channel;
    this.channel = null;
    this.topic = topic;
    this.feed = [];
    this.members = {};
    this.notice = "";
    this.refusal = null;
    this.canSend = true;
    for (const view of this.views) view.reset();
    this._update();
    previous?.leave().catch(() => {});
    if (!this.socket || this._disposed) return;
    const channel = this.socket.channel(topic);
    this.channel = channel;
    channel.on("*", (message) => this._append(message));
    channel.onPresence((members) => {
      this.members = members;
      this._update();
    });
    channel.onJoin(({ reset }) => {
      if (reset) {
        this.feed = [];
        for (const view of this.views) view.reset();
      }
      if (this.notice.startsWith(RETRY_NOTICE)) this.notice = "";
      this.canSend = channel.canSend;
      this._update();
    });
    channel.onRetry(({ detail, reason }) => {
      this.notice = `${RETRY_NOTICE} ${topic}: ${detail || reason}; trying again`;
      this._update();
    });
    channel.onClose((reason) => {
      this.notice = `left ${topic}: ${reason}`;
      this.members = {};
      this._update();
    });
    try {
      const { messages, can_send } = await channel.join({ history: HISTORY_ON_JOIN });
      if (generation !== this._generation) return;
      for (const message of messages) this._append(message);
      this.members = channel.members;
      this.canSend = can_send !== false;
    } catch (error) {
      if (generation !== this._generation) return;
      const answer = serverAnswer(error);
      if (answer && REFUSALS.has(answer.reason)) {
        // The server's refusal: shown in the header, in place of the "left" notice.
        this.refusal = answer;
        this.notice = "";
      } else {
        this.notice = `cannot join ${topic}: ${describe(error)}`;
      }
    }
    this._update();
  }

  /** @param {string} text */
  async send(text) {
    if (!this.channel) throw new ChannelError("not_joined", "not connected yet");
    await this.channel.push(Subject.TEXT, { text });
  }

  /**
   * The kernel's recent inputs, newest last.
   * @returns {Promise<{n: number, source: string}[]>}
   */
  async recentInputs() {
    const answer = await askKernel(this.model, { kind: "inputs" });
    const inputs = Array.isArray(answer.inputs) ? answer.inputs : [];
    return inputs.filter(
      (/** @type {any} */ i) => typeof i?.n === "number" && typeof i?.source === "string",
    );
  }

  /**
   * Have the kernel share its input `n` into the topic (as `%share TOPIC n`).
   * @param {number} n
   */
  async shareInput(n) {
    const answer = await askKernel(this.model, { kind: "share", n });
    if (answer.error) throw new Error(String(answer.error));
  }

  /** @param {Message} message */
  _append(message) {
    this.feed.push(message);
    if (this.feed.length > MAX_SHOWN) this.feed.splice(0, this.feed.length - MAX_SHOWN);
    for (const view of this.views) view.append(message);
  }

  _update() {
    for (const view of this.views) view.update();
  }

  /** The socket's state, or once it is connected, the topic's until it is joined. */
  shownState() {
    const topic = this.channel?.state;
    if (this.state !== "connected" || !topic || topic === "joined" || topic === "closed") {
      return this.state;
    }
    return topic;
  }

  dispose() {
    this._disposed = true;
    this._wake?.();
    this.model.off("change:topic", this._onTopic);
    for (const off of this._cleanup.splice(0)) off();
    const channel = this.channel;
    this.channel = null;
    channel?.leave().catch(() => {});
    // The page's last widget is gone (a kernel socket is this widget's own): stop
    // heartbeats and reconnects.
    if (this.transport === "kernel" || this.socket?.idle) this.socket?.close();
    this.views.clear();
  }
}

/**
 * The reason and detail of a ChannelError. By shape, not `instanceof`: the page's socket
 * is shared by every widget's copy of this module, so its errors may come from another
 * copy's class.
 * @param {unknown} error
 * @returns {{reason: string, detail: string} | null}
 */
export function serverAnswer(error) {
  const e = /** @type {any} */ (error);
  if (!e || typeof e.reason !== "string") return null;
  return { reason: e.reason, detail: typeof e.detail === "string" ? e.detail : "" };
}

/** @param {unknown} error */
function describe(error) {
  if (error instanceof ChannelError) return error.detail || error.reason;
  return error instanceof Error ? error.message : String(error);
}

/** @type {Map<string, Promise<{username: string, name: string} | null>>} sign-ins under way */
const signingIn = new Map();

/**
 * One sign-in per login URL at a time, shared by every widget of the page.
 * @param {string} loginUrl
 */
function signInOnce(loginUrl) {
  let pending = signingIn.get(loginUrl);
  if (!pending) {
    pending = signIn(loginUrl).finally(() => signingIn.delete(loginUrl));
    signingIn.set(loginUrl, pending);
  }
  return pending;
}

/**
 * The page's rooms, by the widget's `_room` id: anywidget hands `initialize` and each
 * `render` a model proxy of their own (and may load this module more than once), so
 * the proxy is no key. Models without an id (the unit tests' fakes) are their own key.
 * @type {Map<unknown, Room>}
 */
const rooms = (/** @type {any} */ (globalThis)[Symbol.for("jupyter_channels.rooms.v1")] ??= new Map());

/** @param {AnyModel} model */
function roomKey(model) {
  const id = model.get("_room");
  return typeof id === "string" && id ? id : model;
}

/**
 * @param {AnyModel} model
 * @returns {Room}
 */
function roomOf(model) {
  const key = roomKey(model);
  let room = rooms.get(key);
  if (!room) {
    room = new Room(model);
    rooms.set(key, room);
    room.start();
  }
  return room;
}

// -- drawing ----------------------------------------------------------------------------------

/**
 * An element with a class and, optionally, text (always as textContent).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** @param {unknown} value */
function clip(value) {
  const text = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : "";
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

/** @param {unknown} value */
function compactJson(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return clip(text ?? "null");
}

/**
 * The base64 of an `image/png` output, or null when it is not plain base64.
 * @param {unknown} value a string or a list of strings (nbformat splits lines)
 */
export function pngData(value) {
  const joined = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : null;
  if (joined === null || joined.length > 8 * 1024 * 1024) return null;
  const clean = joined.replace(/\s+/g, "");
  if (!clean || clean.length % 4 !== 0 || !BASE64_RE.test(clean)) return null;
  return clean;
}

/**
 * A shared cell: its code with the language and a Copy button, then its outputs
 * (stream text, `text/plain`, `image/png`; nothing else is shown).
 * @param {any} payload
 */
function renderCell(payload) {
  const cell = h("div", "jc-cell");
  const bar = h("div", "jc-cell-bar");
  const source = clip(payload?.source);
  bar.append(h("span", "jc-lang", typeof payload?.language === "string" ? payload.language : "code"));
  if (typeof payload?.execution_count === "number") {
    bar.append(h("span", "jc-exec", `[${payload.execution_count}]`));
  }
  if (typeof payload?.notebook === "string") bar.append(h("span", "jc-notebook", payload.notebook));
  const copy = h("button", "jc-copy", "Copy");
  copy.type = "button";
  copy.title = "Copy the code";
  const code = h("code", "", source);
  copy.addEventListener("click", () => copyText(source, code, copy));
  bar.append(copy);
  const pre = h("pre", "jc-code");
  pre.append(code);
  cell.append(bar, pre);
  const outputs = Array.isArray(payload?.outputs) ? payload.outputs.slice(0, MAX_OUTPUTS) : [];
  if (outputs.length) {
    const box = h("div", "jc-outputs");
    for (const output of outputs) {
      const shown = renderOutput(output);
      if (shown) box.append(shown);
    }
    cell.append(box);
  }
  return cell;
}

/** @param {any} output @returns {HTMLElement | null} */
function renderOutput(output) {
  if (!output || typeof output !== "object") return null;
  if (output.output_type === "stream") {
    const stderr = output.name === "stderr";
    return h("pre", stderr ? "jc-stream jc-stderr" : "jc-stream", clip(output.text));
  }
  const data = output.data;
  if (!data || typeof data !== "object") return null;
  const png = pngData(data["image/png"]);
  if (png) {
    const img = h("img", "jc-image");
    img.alt = clip(data["text/plain"]) || "image";
    img.src = `data:image/png;base64,${png}`;
    return img;
  }
  if (data["text/plain"] !== undefined) return h("pre", "jc-plain", clip(data["text/plain"]));
  return null;
}

/**
 * @param {string} text
 * @param {HTMLElement} code
 * @param {HTMLButtonElement} button
 */
function copyText(text, code, button) {
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  };
  const select = () => {
    // Without the async clipboard (a page that is not a secure context): select the code.
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(code);
    selection?.removeAllRanges();
    selection?.addRange(range);
    if (document.execCommand?.("copy")) done();
  };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).then(done, select);
  else select();
}

/** @param {Message} message */
function renderMessage(message) {
  const item = h("div", "jc-msg");
  if (typeof message.offset === "number") item.dataset.offset = String(message.offset);
  item.dataset.subject = String(message.subject);
  const meta = h("div", "jc-meta");
  const author = h("span", "jc-author", String(message.from?.name ?? message.from?.user ?? "?"));
  if (message.from?.kind) author.dataset.kind = String(message.from.kind);
  const when = new Date(typeof message.ts === "number" ? message.ts : Date.now());
  const time = h("time", "jc-time", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  meta.append(author, time);
  /** @type {any} */
  const payload = message.payload;
  /** @type {HTMLElement} */
  let body;
  if (message.subject === Subject.TEXT && typeof payload?.text === "string") {
    body = h("div", "jc-text", clip(payload.text));
  } else if (message.subject === Subject.CELL && payload && typeof payload === "object") {
    body = renderCell(payload);
  } else {
    body = h("div", "jc-other");
    body.append(h("span", "jc-subject", String(message.subject)), h("code", "jc-json", compactJson(payload)));
  }
  item.append(meta, body);
  return item;
}

/**
 * Who is here, grouped by user: initials in the user's color, the number of
 * their connections when more than one.
 * @param {HTMLElement} box
 * @param {HTMLElement} count
 * @param {Members} members
 */
function renderPresence(box, count, members) {
  const users = Object.entries(members).filter(([, metas]) => metas.length > 0);
  users.sort(([a, am], [b, bm]) => (am[0].name || a).localeCompare(bm[0].name || b));
  box.replaceChildren();
  for (const [username, metas] of users) {
    const first = metas[0];
    const name = String(first.name || username);
    const avatar = h("span", "jc-avatar", String(first.initials || name.slice(0, 1)).slice(0, 3));
    avatar.dataset.user = username;
    avatar.dataset.kind = String(first.kind);
    if (typeof first.color === "string" && first.color) avatar.style.backgroundColor = first.color;
    avatar.title = metas.length > 1 ? `${name} (${metas.length} connections)` : name;
    if (metas.length > 1) avatar.append(h("span", "jc-badge", String(metas.length)));
    box.append(avatar);
  }
  count.textContent = `${users.length} here`;
  count.dataset.count = String(users.length);
}

/**
 * One view of a room.
 * @param {Room} room
 * @param {HTMLElement} el
 * @returns {() => void} cleanup
 */
function mount(room, el) {
  const root = h("div", "jc-widget");
  const header = h("div", "jc-header");
  const topic = h("span", "jc-topic");
  const state = h("span", "jc-state");
  const dot = h("span", "jc-dot");
  const stateText = h("span", "jc-state-text");
  state.append(dot, stateText);
  const presence = h("div", "jc-presence");
  const avatars = h("div", "jc-avatars");
  const count = h("span", "jc-count");
  presence.append(avatars, count);
  // Its own row of the header: why this topic could not be joined.
  const refusal = h("div", "jc-refusal");
  refusal.setAttribute("role", "alert");
  // Its own row too: the link that signs in to a channels service under JupyterHub.
  const signInRow = h("div", "jc-signin-row");
  const signInLink = h("a", "jc-signin", "Sign in to channels");
  signInLink.target = "_blank";
  signInLink.rel = "noopener";
  signInRow.append(signInLink, h("span", "jc-signin-note", SIGN_IN_NOTE));
  header.append(topic, state, presence, refusal);
  const notice = h("div", "jc-notice");
  const feed = h("div", "jc-feed");
  feed.setAttribute("role", "log");
  feed.setAttribute("aria-live", "polite");
  const compose = h("div", "jc-compose");
  // Typing here must not trigger JupyterLab's notebook shortcuts (Lumino honours this).
  compose.setAttribute("data-lm-suppress-shortcuts", "true");
  const input = h("input", "jc-input");
  input.type = "text";
  input.autocomplete = "off";
  input.setAttribute("aria-label", "Message");
  const send = h("button", "jc-send", "Send");
  send.type = "button";
  const shareButton = h("button", "jc-share", "Share a cell");
  shareButton.type = "button";
  shareButton.title = "Share one of this kernel's recent cells with the topic";
  const readOnly = h("span", "jc-readonly", "read-only");
  readOnly.title = READ_ONLY_NOTE;
  compose.append(input, send, shareButton, readOnly);
  // The picker lists the kernel's recent inputs; choosing one shares it (never runs it).
  const picker = h("div", "jc-picker");
  picker.hidden = true;
  picker.setAttribute("data-lm-suppress-shortcuts", "true");
  root.append(header, notice, feed, compose, picker);
  el.append(root);

  const atBottom = () => feed.scrollHeight - feed.scrollTop - feed.clientHeight < 24;

  /** @type {View} */
  const view = {
    reset() {
      feed.replaceChildren(...room.feed.map(renderMessage));
      feed.scrollTop = feed.scrollHeight;
      view.update();
    },
    append(message) {
      const stick = atBottom();
      feed.append(renderMessage(message));
      while (feed.childElementCount > MAX_SHOWN) feed.firstElementChild?.remove();
      if (stick) feed.scrollTop = feed.scrollHeight;
    },
    update() {
      topic.textContent = room.topic;
      topic.title = room.topic;
      const shown = room.shownState();
      const label = STATE_LABELS[/** @type {keyof typeof STATE_LABELS} */ (shown)] ?? shown;
      const viaKernel = room.transport === "kernel";
      stateText.textContent =
        viaKernel && room.kernelBusy ? KERNEL_BUSY : viaKernel ? `${label} via kernel` : label;
      root.dataset.state = shown;
      root.dataset.transport = room.transport ?? "";
      root.dataset.busy = String(viaKernel && room.kernelBusy);
      renderPresence(avatars, count, room.members);
      notice.textContent = room.transportError || room.notice;
      notice.hidden = !notice.textContent;
      refusal.textContent = room.refusal ? refusalLine(room.topic, room.refusal) : "";
      refusal.hidden = !room.refusal;
      // On the page only while needed: a link that is there signs in.
      if (room.signInUrl) {
        signInLink.href = room.signInUrl;
        if (signInRow.parentNode !== header) header.append(signInRow);
      } else {
        signInRow.remove();
      }
      const locked = !room.canSend || room.refusal !== null;
      root.dataset.readonly = String(!room.canSend);
      readOnly.hidden = room.canSend;
      for (const control of [input, send, shareButton]) control.disabled = locked;
      if (locked && !picker.hidden) closePicker();
      input.placeholder = room.refusal
        ? "not joined"
        : room.canSend
          ? `Message ${room.topic}`
          : READ_ONLY_NOTE;
    },
  };

  const submit = () => {
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    room.notice = "";
    view.update();
    room.send(text).catch((error) => {
      room.notice = `not sent: ${describe(error)}`;
      if (!input.value) input.value = text;
      room._update();
    });
  };
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  send.addEventListener("click", submit);

  const closePicker = () => {
    picker.hidden = true;
    picker.replaceChildren();
  };
  shareButton.addEventListener("click", async () => {
    if (!picker.hidden) return closePicker();
    picker.hidden = false;
    picker.replaceChildren(h("div", "jc-picker-note", "asking the kernel for its recent cells…"));
    const inputs = await room.recentInputs();
    if (picker.hidden) return;
    const title = h("div", "jc-picker-note", inputs.length ? "Share which cell?" : "no cells run yet");
    const choices = inputs.reverse().map(({ n, source }) => {
      const choice = h("button", "jc-picker-choice");
      choice.type = "button";
      choice.append(h("span", "jc-picker-n", `[${n}]`), h("code", "", clip(source.split("\n")[0])));
      choice.title = source;
      choice.addEventListener("click", () => {
        closePicker();
        room.shareInput(n).catch((error) => {
          room.notice = `not shared: ${describe(error)}`;
          room._update();
        });
      });
      return choice;
    });
    const cancel = h("button", "jc-picker-cancel", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", closePicker);
    picker.replaceChildren(title, ...choices, cancel);
  });

  room.views.add(view);
  view.reset();
  return () => {
    room.views.delete(view);
    root.remove();
  };
}

export default {
  /** @type {import("@anywidget/types").Initialize<Model>} */
  initialize({ model }) {
    const room = roomOf(model);
    return () => {
      room.dispose();
      if (rooms.get(roomKey(model)) === room) rooms.delete(roomKey(model));
    };
  },
  /** @type {import("@anywidget/types").Render<Model>} */
  render({ model, el }) {
    return mount(roomOf(model), el);
  },
};
