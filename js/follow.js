// Follow mode: the cells an author shares, from the moment one follows them, are added
// at the end of one's own notebook, unrun, tagged with who shared them and when.
//
// Only finished cells are taken (a live cell's final frame, never its running frames),
// only those that arrive while following (never the topic's history), each once. The
// toggle exists only where the widget's notebook can take cells (js/notebook.js);
// nothing is ever run.

import { cellStatus, CellStatus } from "./cells.js";
import { Subject } from "./constants.js";
import { h } from "./dom.js";

/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./notebook.js").Notebook} Notebook */

/** The tag a followed cell gets starts with this. */
export const TAG_PREFIX = "shared-by-";
/**
 * The username of every connection made with a Jupyter server's kernel token: such a
 * kernel is told apart by its name (the notebook it runs for).
 */
const KERNEL_TOKEN_USER = "kernel";

/**
 * Who shared a message, as follow mode tells authors apart: the username, or for a kernel
 * on the kernel token (whose username all such kernels share) `kernel:<its name>`.
 * @param {Message} message
 * @returns {{key: string, name: string, tag: string} | null}
 */
export function authorOf(message) {
  const from = message?.from;
  const user = from?.user;
  if (typeof user !== "string" || !user) return null;
  const name = typeof from.name === "string" && from.name ? from.name : user;
  if (user === KERNEL_TOKEN_USER && from.kind === "kernel" && name !== user) {
    return { key: `${KERNEL_TOKEN_USER}:${name}`, name, tag: name };
  }
  return { key: user, name, tag: user };
}

/**
 * The tag of a cell taken from `user`'s share at `ts`: `shared-by-alice-at-2026-03-01T09:30:05Z`
 * (Jupyter tags hold no spaces or commas; those of a username become "_").
 * @param {string} user
 * @param {number} ts ms since the epoch (the server's time of the message)
 */
export function followTag(user, ts) {
  const who = user.replace(/[\s,]+/g, "_") || "unknown";
  const when = new Date(Number.isFinite(ts) ? ts : Date.now()).toISOString().replace(/\.\d+Z$/, "Z");
  return `${TAG_PREFIX}${who}-at-${when}`;
}

/** Whom this widget follows, and the notebook their cells go to. */
export class Follow {
  /**
   * @param {Notebook | null} notebook where the cells go; null: following is not offered
   * @param {string} topic the topic the cells come from (recorded in their metadata)
   */
  constructor(notebook, topic = "") {
    this.notebook = notebook;
    this.topic = topic;
    /** @type {Map<string, string>} author (authorOf's key) -> the name shown */
    this.authors = new Map();
    /** @type {Set<string>} shares already inserted (their id, else their offset) */
    this._taken = new Set();
    /** @type {Set<() => void>} */
    this._listeners = new Set();
    /** Why the last insert failed ("" when it did not). */
    this.error = "";
  }

  /** Whether this host lets the widget add cells (the toggle is shown only then). */
  get available() {
    return this.notebook !== null;
  }

  /** @param {string} user */
  isFollowing(user) {
    return this.authors.has(user);
  }

  /**
   * Start or stop following an author (authorOf's key).
   * @param {string} user
   * @param {string} [name] the name to show
   */
  toggle(user, name) {
    if (!this.available || !user) return;
    if (this.authors.has(user)) this.authors.delete(user);
    else this.authors.set(user, name || user);
    this.error = "";
    this._changed();
  }

  /** @param {string} user */
  unfollow(user) {
    if (this.authors.delete(user)) this._changed();
  }

  /**
   * Listen to follows starting and stopping (and failed inserts).
   * @param {() => void} listener
   * @returns {() => void} stop listening
   */
  onChange(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  _changed() {
    for (const listener of [...this._listeners]) listener();
  }

  /**
   * A message that arrived now (not a join's history): a finished cell of an author
   * followed goes into the notebook.
   * @param {Message} message
   * @returns {boolean} whether a cell was inserted
   */
  receive(message) {
    if (!this.notebook || message?.subject !== Subject.CELL) return false;
    const author = authorOf(message);
    if (!author || !this.authors.has(author.key)) return false;
    /** @type {any} */
    const payload = message.payload;
    if (!payload || typeof payload.source !== "string") return false;
    if (cellStatus(payload) === CellStatus.RUNNING) return false;
    const key =
      typeof payload.id === "string" && payload.id
        ? `id:${payload.id}`
        : typeof message.offset === "number"
          ? `offset:${message.offset}`
          : null;
    if (key === null || this._taken.has(key)) return false;
    this._taken.add(key);
    /** @type {Record<string, unknown>} */
    const origin = { from: message.from.user, name: author.name, ts: message.ts };
    if (this.topic) origin.topic = this.topic;
    if (typeof message.offset === "number") origin.offset = message.offset;
    try {
      this.notebook.insertCell(payload.source, {
        tags: [followTag(author.tag, message.ts)],
        jupyter_channels: origin,
      });
      return true;
    } catch (error) {
      this.error = `could not add ${author.name}'s cell: ${error instanceof Error ? error.message : error}`;
      this._changed();
      return false;
    }
  }
}

/**
 * The Follow toggle of a cell's header, for the cell's author; null where following is
 * not offered, or for one's own cells.
 * @param {Follow} follow
 * @param {Message} message
 * @param {boolean} [mine] the cell is this page's user's own
 * @returns {HTMLButtonElement | null}
 */
export function followButton(follow, message, mine = false) {
  const author = authorOf(message);
  if (!follow.available || mine || !author) return null;
  const { key: user, name } = author;
  const button = h("button", "jc-follow");
  button.type = "button";
  button.dataset.user = user;
  button.dataset.name = name;
  drawButton(button, follow);
  button.addEventListener("click", () => follow.toggle(user, name));
  return button;
}

/**
 * @param {HTMLButtonElement} button
 * @param {Follow} follow
 */
function drawButton(button, follow) {
  const user = button.dataset.user ?? "";
  const name = button.dataset.name || user;
  const on = follow.isFollowing(user);
  button.textContent = on ? `Following ${name}` : `Follow ${name}`;
  button.setAttribute("aria-pressed", String(on));
  button.title = on
    ? `Stop adding ${name}'s shared cells to this notebook`
    : `Add each cell ${name} shares from now on at the end of this notebook (not run)`;
}

/**
 * The header's row while following someone ("Following: Alice [Stop] …: their shared
 * cells are added to this notebook, not run"), hidden otherwise; it also keeps every
 * Follow toggle of its widget up to date. A header tool of js/feed.js.
 * @param {{follow: Follow}} room
 * @returns {HTMLElement | null} null where following is not offered
 */
export function followTool({ follow }) {
  if (!follow.available) return null;
  const bar = h("div", "jc-following");
  bar.hidden = true;
  let shown = false;
  const off = follow.onChange(() => {
    // The view went away (its header is no longer on the page): stop listening.
    if (shown && !bar.isConnected) return off();
    shown ||= bar.isConnected;
    syncFollow(bar, follow);
  });
  syncFollow(bar, follow);
  return bar;
}

/**
 * Bring a view up to date with whom its room follows: the header's row and every
 * Follow toggle of the widget holding `bar`.
 * @param {HTMLElement} bar
 * @param {Follow} follow
 */
function syncFollow(bar, follow) {
  const root = bar.closest(".jc-widget") ?? bar;
  for (const button of root.querySelectorAll("button.jc-follow")) {
    drawButton(/** @type {HTMLButtonElement} */ (button), follow);
  }
  const authors = [...follow.authors];
  bar.hidden = !authors.length && !follow.error;
  bar.replaceChildren();
  if (authors.length) {
    bar.append(h("span", "jc-following-note", "Following:"));
    for (const [user, name] of authors) {
      const who = h("span", "jc-followed", name);
      who.dataset.user = user;
      const stop = h("button", "jc-unfollow", "Stop");
      stop.type = "button";
      stop.dataset.user = user;
      stop.title = `Stop adding ${name}'s shared cells to this notebook`;
      stop.addEventListener("click", () => follow.unfollow(user));
      who.append(stop);
      bar.append(who);
    }
    bar.append(h("span", "jc-following-note", "their shared cells are added to this notebook, not run"));
  }
  if (follow.error) bar.append(h("span", "jc-following-error", follow.error));
}
