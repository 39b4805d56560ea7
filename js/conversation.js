// What the feed shows: a topic's messages in order, each in its latest state.
//
// `edit` and `delete` messages are not items of their own: they change the `text`
// message they refer to (by offset), also when they arrive before it (an earlier page
// loaded later). A shared cell that runs is one item, updated by every frame with its
// `id` until the stored final one. `typing` frames never reach here (the room tracks them).

/** Subjects of wave 2 that the feed reads (the Python side names them in DESIGN.md). */
export const EDIT = "edit";
export const DELETE = "delete";
export const MUTE = "mute";
export const TYPING = "typing";

/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./client.js").Sender} Sender */

/**
 * One item of the feed.
 * @typedef {object} Item
 * @property {string} key its offset, `cell:<id>` for a shared cell, or a counter for a push
 * @property {Message} message the message (for a cell: its latest frame)
 * @property {string | null} text a `text` message's current text (after edits); else null
 * @property {Message | null} edit the latest edit applied, if any
 * @property {Message | null} deletion the delete applied, if any
 */

/** @param {Message} message */
function offsetOf(message) {
  return typeof message.offset === "number" ? message.offset : null;
}

/**
 * The offset an `edit` or `delete` message refers to, or null when its shape is wrong.
 * @param {Message} message
 */
export function targetOf(message) {
  /** @type {any} */
  const payload = message.payload;
  const target = payload?.offset;
  if (!Number.isInteger(target)) return null;
  if (message.subject === EDIT && typeof payload.text !== "string") return null;
  return target;
}

/**
 * The key of a message's item: a shared cell's `id` keeps its frames in one item.
 * @param {Message} message
 * @param {() => number} counter
 */
function keyOf(message, counter) {
  /** @type {any} */
  const payload = message.payload;
  if (message.subject === "cell" && typeof payload?.id === "string" && payload.id) return `cell:${payload.id}`;
  const offset = offsetOf(message);
  return offset === null ? `push:${counter()}` : String(offset);
}

/** The feed's items and the edits and deletes that apply to them. */
export class Conversation {
  /** @param {number} max items kept; the oldest go first */
  constructor(max) {
    this.max = max;
    /** @type {Item[]} */
    this.items = [];
    /** @type {Map<string, Item>} */
    this.byKey = new Map();
    /** @type {Map<number, Message>} the latest edit of each offset */
    this.edits = new Map();
    /** @type {Map<number, Message>} */
    this.deletes = new Map();
    /** The lowest offset of any stored message seen (items, edits, deletes), or null. */
    this.oldest = /** @type {number | null} */ (null);
    this._pushes = 0;
  }

  clear() {
    this.items = [];
    this.byKey.clear();
    this.edits.clear();
    this.deletes.clear();
    this.oldest = null;
  }

  /** @param {string} key */
  get(key) {
    return this.byKey.get(key) ?? null;
  }

  /** @param {number} offset */
  at(offset) {
    return this.byKey.get(String(offset)) ?? null;
  }

  /**
   * Take a newer message: a new item, a change of an item already there, or nothing
   * to show (an edit of a message not loaded, a frame ignored).
   * @param {Message} message
   * @returns {{added: Item | null, changed: Item | null, removed: Item[]}}
   */
  add(message) {
    const none = { added: null, changed: null, removed: [] };
    this._saw(message);
    if (message.subject === TYPING) return none;
    if (message.subject === EDIT || message.subject === DELETE) {
      const changed = this._reference(message);
      return { ...none, changed };
    }
    /** @type {any} */
    const raw = message;
    // Ephemeral frames other than a running cell's are not kept.
    const key = keyOf(message, () => ++this._pushes);
    if (raw.ephemeral === true && !key.startsWith("cell:")) return none;
    const existing = this.byKey.get(key);
    if (existing) {
      if (key.startsWith("cell:")) {
        // A running frame late after the final (stored) one changes nothing.
        if (raw.ephemeral === true && offsetOf(existing.message) !== null) return none;
        existing.message = message;
        return { ...none, changed: existing };
      }
      return none;
    }
    const item = this._item(key, message);
    this.items.push(item);
    this.byKey.set(key, item);
    /** @type {Item[]} */
    const removed = [];
    while (this.items.length > this.max) {
      const gone = /** @type {Item} */ (this.items.shift());
      this.byKey.delete(gone.key);
      removed.push(gone);
    }
    return { added: item, changed: null, removed };
  }

  /**
   * Take a page of older messages (oldest first), as `history` answers.
   * @param {Message[]} messages
   * @returns {{added: Item[], changed: Item[]}} added: the new items, oldest first
   */
  prepend(messages) {
    /** @type {Set<Item>} */
    const changed = new Set();
    for (const message of messages) {
      this._saw(message);
      if (message.subject === EDIT || message.subject === DELETE) {
        const item = this._reference(message);
        if (item) changed.add(item);
      }
    }
    const first = this.items.length ? offsetOf(this.items[0].message) : null;
    /** @type {Item[]} */
    const added = [];
    for (const message of messages) {
      const offset = offsetOf(message);
      if (offset === null || (first !== null && offset >= first)) continue;
      if (message.subject === EDIT || message.subject === DELETE || message.subject === TYPING) continue;
      const key = keyOf(message, () => ++this._pushes);
      if (this.byKey.has(key)) continue;
      const item = this._item(key, message);
      added.push(item);
      this.byKey.set(key, item);
    }
    this.items.unshift(...added);
    for (const item of added) changed.delete(item);
    return { added, changed: [...changed] };
  }

  /** @param {Message} message */
  _saw(message) {
    const offset = offsetOf(message);
    if (offset !== null && (this.oldest === null || offset < this.oldest)) this.oldest = offset;
  }

  /**
   * Record an edit or a delete; the item it changes, when it is here.
   * @param {Message} message
   */
  _reference(message) {
    const target = targetOf(message);
    if (target === null) return null;
    const store = message.subject === EDIT ? this.edits : this.deletes;
    const known = store.get(target);
    const offset = offsetOf(message) ?? Infinity;
    if (known && (offsetOf(known) ?? Infinity) > offset) return null;
    store.set(target, message);
    const item = this.at(target);
    if (!item || item.message.subject !== "text") return null;
    this._apply(item);
    return item;
  }

  /**
   * @param {string} key
   * @param {Message} message
   * @returns {Item}
   */
  _item(key, message) {
    /** @type {Item} */
    const item = { key, message, text: null, edit: null, deletion: null };
    this._apply(item);
    return item;
  }

  /** @param {Item} item */
  _apply(item) {
    const message = item.message;
    /** @type {any} */
    const payload = message.payload;
    if (message.subject !== "text" || typeof payload?.text !== "string") return;
    const offset = offsetOf(message);
    const edit = offset === null ? undefined : this.edits.get(offset);
    const deletion = offset === null ? undefined : this.deletes.get(offset);
    item.edit = edit ?? null;
    item.deletion = deletion ?? null;
    item.text = deletion ? null : edit ? /** @type {any} */ (edit.payload).text : payload.text;
  }
}

/**
 * The minute a message belongs to (local time).
 * @param {Message} message
 */
function minuteOf(message) {
  return Math.floor((typeof message.ts === "number" ? message.ts : 0) / 60_000);
}

/**
 * Whether `message` continues the group of `previous`: the same sender, the same minute.
 * @param {Message | null | undefined} previous
 * @param {Message} message
 */
export function continues(previous, message) {
  if (!previous) return false;
  const a = previous.from;
  const b = message.from;
  if (!a || !b || a.user !== b.user || a.kind !== b.kind) return false;
  if (previous.subject === MUTE || message.subject === MUTE) return false;
  return minuteOf(previous) === minuteOf(message) && sameDay(previous.ts, message.ts);
}

/**
 * @param {number} a ms since the epoch
 * @param {number} b
 */
export function sameDay(a, b) {
  const x = new Date(a);
  const y = new Date(b);
  return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
}

/**
 * A day separator's words: "Today", "Yesterday", or the date.
 * @param {number} ts
 * @param {number} now
 */
export function dayLabel(ts, now) {
  if (sameDay(ts, now)) return "Today";
  if (sameDay(ts, now - 86_400_000)) return "Yesterday";
  const date = new Date(ts);
  /** @type {Intl.DateTimeFormatOptions} */
  const options = { weekday: "long", month: "long", day: "numeric" };
  if (date.getFullYear() !== new Date(now).getFullYear()) options.year = "numeric";
  return date.toLocaleDateString([], options);
}

/**
 * The line of a stored `mute` message: "bob was muted for 10 min by alice".
 * @param {Message} message
 */
export function muteLine(message) {
  /** @type {any} */
  const payload = message.payload;
  const who = typeof payload?.user === "string" ? payload.user : "?";
  const by = message.from?.name || message.from?.user || "?";
  const seconds = Number(payload?.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0) return `${who} may send again (by ${by})`;
  return `${who} was muted for ${duration(seconds)} by ${by}`;
}

/** @param {number} seconds */
export function duration(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86_400) return `${Math.round(seconds / 360) / 10} h`;
  return `${Math.round(seconds / 8640) / 10} days`;
}
