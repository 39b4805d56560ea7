// The front end of jupyter_channels.ChannelWidget (an anywidget module).
//
// `initialize` runs once per widget model, before (and without) any view: it
// connects and joins the topic, so the widget is live even when it is not shown.
// `render` draws one view of it; every view of a model shows the same feed.
// The view is js/feed.js; shared cells are drawn by js/cells.js.

import { ChannelError, Socket, getSocket } from "./client.js";
import { DEFAULT_HISTORY_LIMIT, DEFAULT_TIMEOUT_MS, ErrorCode, Subject, WS_PATH } from "./constants.js";
import { hubEndpoint, signIn } from "./signin.js";
import { firstConnection, kernelWebSocket, modelKernel } from "./transports.js";
import { describe } from "./dom.js";
import { MAX_SHOWN, headerTools, mount } from "./feed.js";
import { liveCellId, supersedes } from "./cells.js";
import { Follow, followTool } from "./follow.js";
import { notebookOf } from "./notebook.js";
import { Conversation, DELETE, EDIT, MUTE, TYPING } from "./conversation.js";
import { mentions } from "./mentions.js";
import { TypingSender, Typists } from "./typing.js";

export { pngData } from "./cells.js";
export { KERNEL_BUSY, READ_ONLY_NOTE, SIGN_IN_NOTE, refusalLine } from "./feed.js";

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

/** @type {Set<string>} errors of a join that say the topic is not for this user: shown in the header */
const REFUSALS = new Set([ErrorCode.UNAUTHORIZED, ErrorCode.JOIN_REJECTED, ErrorCode.UNMATCHED_TOPIC]);

/** How often a widget that is not signed in tries again (also whenever the window regains focus). */
const SIGN_IN_RETRY_MS = 5_000;

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
 * Who this page is in the topic, as far as it knows: the username (from the Jupyter
 * server's `api/me`, the service's sign-in, or the echo of a message it sent) and its
 * connection id (from such an echo).
 * @typedef {{user: string | null, id: string | null}} Me
 */

/** Messages one "load earlier" asks for. */
export const EARLIER_PAGE = 50;

/**
 * The username of the page's own Jupyter server session (`GET api/me`), or null.
 * @param {Document} doc
 * @returns {Promise<string | null>}
 */
export async function pageUser(doc) {
  const element = doc.getElementById("jupyter-config-data");
  if (!element) return null;
  try {
    const config = JSON.parse(element.textContent || "{}");
    const url = new URL("api/me", new URL(config.baseUrl || "/", doc.baseURI));
    /** @type {Record<string, string>} */
    const headers = { Accept: "application/json" };
    if (typeof config.token === "string" && config.token) headers.Authorization = `token ${config.token}`;
    const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return null;
    const answer = await response.json();
    const username = answer?.identity?.username;
    return typeof username === "string" && username ? username : null;
  } catch {
    return null;
  }
}

/** @typedef {import("./conversation.js").Item} Item */

/**
 * What views draw; one per model.
 * @typedef {object} View
 * @property {() => void} reset the topic changed or history restarted: redraw the feed
 * @property {(item: Item, live: boolean) => void} append a new item; `live`: it arrived now (not a join's history)
 * @property {(item: Item) => void} change an item changed (edited, deleted, a running cell's new frame)
 * @property {(items: Item[]) => void} prepend older items, oldest first
 * @property {(items: Item[]) => void} remove items the feed no longer keeps
 * @property {() => void} update header, presence, notice and the typing line
 */

/** The live state of one widget model: its channel, feed, members and connection state. */
export class Room {
  /** @param {AnyModel} model */
  constructor(model) {
    this.model = model;
    this.topic = model.get("topic");
    /** @type {Socket | null} */
    this.socket = null;
    /** @type {Channel | null} */
    this.channel = null;
    /** What the feed shows, each message in its latest state. */
    this.conversation = new Conversation(MAX_SHOWN);
    /** Whose shared cells go into this widget's notebook as they arrive (js/follow.js). */
    this.follow = new Follow(notebookOf(model), this.topic);
    /** @type {Me} */
    this.me = { user: null, id: null };
    /** @type {Set<number>} offsets of messages this page sent, until their echo names it */
    this._sent = new Set();
    /** Who else is typing. */
    this.typists = new Typists();
    this._typingSender = new TypingSender();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._typingTimer = null;
    /** Whether "load earlier" found the beginning (or is loading: null). */
    this.noEarlier = false;
    this.loadingEarlier = false;
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
      // The page's own server: its session is who this page is.
      pageUser(document).then((user) => {
        if (user && !this.me.user && !this._disposed) {
          this.me.user = user;
          this._refreshMine();
        }
      });
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
        this.me.user = user.username;
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
    this.follow.topic = topic;
    this.conversation.clear();
    this.typists.clear();
    this.noEarlier = false;
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
    channel.on("*", (message) => this._append(message, true));
    channel.onPresence((members) => {
      this.members = members;
      this._update();
    });
    channel.onJoin(({ reset }) => {
      if (reset) {
        this.conversation.clear();
        this.noEarlier = false;
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
      this.canSend = can_send !== false;
      for (const message of messages) this._append(message, false);
      if (messages.length < HISTORY_ON_JOIN) this.noEarlier = true;
      this.members = channel.members;
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

  /** The joined channel, or a ChannelError. */
  _joined() {
    if (!this.channel) throw new ChannelError("not_joined", "not connected yet");
    return this.channel;
  }

  /** @param {string} text */
  async send(text) {
    const answer = await this._joined().push(Subject.TEXT, { text });
    this._typingSender.reset();
    this._learn(answer);
  }

  /**
   * Replace the text of the message at `offset` (the server allows its author and moderators).
   * @param {number} offset
   * @param {string} text
   */
  async edit(offset, text) {
    const channel = /** @type {any} */ (this._joined());
    const answer = typeof channel.edit === "function"
      ? await channel.edit(offset, text)
      : await channel.push(EDIT, { offset, text });
    this._learn(answer);
  }

  /**
   * Delete the message at `offset` (the server allows its author and moderators).
   * @param {number} offset
   */
  async delete(offset) {
    const channel = /** @type {any} */ (this._joined());
    const answer = typeof channel.delete === "function"
      ? await channel.delete(offset)
      : await channel.push(DELETE, { offset });
    this._learn(answer);
  }

  /**
   * Mute `user` in the topic for `seconds` (0 lifts it); moderators only.
   * @param {string} user
   * @param {number} seconds
   */
  async mute(user, seconds) {
    const channel = /** @type {any} */ (this._joined());
    if (typeof channel.mute === "function") await channel.mute(user, seconds);
    else await channel.push(MUTE, { user, seconds });
  }

  /** The person is typing: an ephemeral `typing` frame, at most every TYPING_EVERY_MS. */
  typing() {
    const channel = /** @type {any} */ (this.channel);
    if (!channel || !this.canSend || !this._typingSender.due(Date.now())) return;
    // A refused or lost "typing" is of no consequence.
    channel.push(TYPING, {}, { ephemeral: true }).catch(() => {});
  }

  /** Page back: the EARLIER_PAGE messages before the oldest one shown. */
  async loadEarlier() {
    const channel = this.channel;
    const before = this.conversation.oldest;
    if (!channel || this.loadingEarlier || this.noEarlier) return;
    if (before !== null && before <= 1) {
      this.noEarlier = true;
      this._update();
      return;
    }
    this.loadingEarlier = true;
    this._update();
    try {
      /** @type {{limit: number, before?: number}} */
      const request = { limit: EARLIER_PAGE };
      if (before !== null) request.before = before;
      const messages = await channel.history(request);
      if (channel !== this.channel) return;
      if (messages.length < EARLIER_PAGE) this.noEarlier = true;
      const { added, changed } = this.conversation.prepend(messages);
      if (!added.length && !messages.length) this.noEarlier = true;
      for (const view of this.views) {
        if (added.length) view.prepend(added);
        for (const item of changed) view.change(item);
      }
    } catch (error) {
      this.notice = `cannot load earlier messages: ${describe(error)}`;
    } finally {
      this.loadingEarlier = false;
      this._update();
    }
  }

  /**
   * The ok reply of a stored message this page sent: its echo names this page.
   * @param {unknown} answer
   */
  _learn(answer) {
    const offset = /** @type {any} */ (answer)?.offset;
    if (typeof offset !== "number") return;
    const item = this.conversation.at(offset);
    if (item) this._echo(item.message);
    else this._sent.add(offset);
  }

  /**
   * A message this page sent came back: from it, who this page is.
   * @param {Message} message
   */
  _echo(message) {
    const from = message.from;
    if (!from) return;
    const changed = this.me.id !== from.id || this.me.user !== from.user;
    this.me = { user: from.user, id: from.id };
    if (changed) this._refreshMine();
  }

  /** Who this page is became known: redraw what depends on it. */
  _refreshMine() {
    for (const view of this.views) view.reset();
  }

  /**
   * Whether this page (or its user) sent `message`.
   * @param {Message} message
   */
  isMine(message) {
    const from = message.from;
    if (!from) return false;
    if (this.me.id && from.id === this.me.id) return true;
    // Kernels on a server's kernel token all share one username: only the connection
    // id tells this page's apart.
    if (from.kind === "kernel") return false;
    return Boolean(this.me.user) && from.user === this.me.user;
  }

  /**
   * Whether `message` mentions this page's user.
   * @param {Message} message
   * @param {string | null} [text] its current text
   */
  mentionsMe(message, text) {
    const shown = text ?? /** @type {any} */ (message.payload)?.text;
    return message.subject === Subject.TEXT && typeof shown === "string" && mentions(shown, this.me.user);
  }

  /**
   * Someone else is typing: shown until TYPING_SHOWN_MS after their last frame.
   * @param {Message} message
   */
  _typing(message) {
    if (this.isMine(message) || !message.from?.user) return;
    this.typists.saw(typistKey(message.from), message.from.name, Date.now());
    this._scheduleTyping();
    this._update();
  }

  _scheduleTyping() {
    if (this._typingTimer !== null) clearTimeout(this._typingTimer);
    this._typingTimer = null;
    const next = this.typists.next(Date.now());
    if (next === null) return;
    this._typingTimer = setTimeout(() => {
      this._typingTimer = null;
      this.typists.names(Date.now());
      this._scheduleTyping();
      this._update();
    }, next + 20);
  }

  /**
   * A mention of this user while the page is hidden: a browser notification, when the
   * user allowed them (asked only by a click on the widget's control).
   * @param {Message} message
   * @param {string} text
   */
  _notify(message, text) {
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (typeof document === "undefined" || document.visibilityState !== "hidden") return;
    const who = message.from?.name || message.from?.user || "someone";
    text = text.trim();
    try {
      const note = new Notification(`${who} mentioned you in ${this.topic}`, {
        body: text.length > 200 ? `${text.slice(0, 200)}…` : text,
        tag: `jupyter-channels:${this.topic}:${message.offset}`,
      });
      note.onclick = () => {
        window.focus();
        note.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker.
    }
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

  /**
   * @param {Message} message
   * @param {boolean} live it arrived now (false: a join's history)
   */
  _append(message, live) {
    if (typeof message.offset === "number" && this._sent.delete(message.offset)) this._echo(message);
    if (message.subject === TYPING) {
      if (live) this._typing(message);
      return;
    }
    // Their message arrived: they are no longer typing it.
    if (message.subject === Subject.TEXT && message.from?.user && this.typists.stop(typistKey(message.from))) {
      this._scheduleTyping();
      this._update();
    }
    // A running frame of a live cell whose final frame is shown came late: dropped.
    const cellId = liveCellId(message);
    const shownCell = cellId === null ? null : this.conversation.get(`cell:${cellId}`);
    if (shownCell && !supersedes(shownCell.message, message)) return;
    if (live) this.follow.receive(message);
    const { added, changed, removed } = this.conversation.add(message);
    for (const view of this.views) {
      if (removed.length) view.remove(removed);
      if (added) view.append(added, live);
      if (changed) view.change(changed);
    }
    if (added && live && added.text !== null && !this.isMine(message) && this.mentionsMe(message, added.text)) {
      this._notify(message, added.text);
    }
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
    if (this._typingTimer !== null) clearTimeout(this._typingTimer);
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
 * Who is typing, as the typing line tells people apart: the username, or for a kernel
 * (kernels on the kernel token share one) its connection.
 * @param {import("./client.js").Sender} from
 */
function typistKey(from) {
  return from.kind === "kernel" ? `${from.user}#${from.id}` : from.user;
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

// The header's row of whom this widget follows (where the notebook can take cells).
headerTools.push(followTool);

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
