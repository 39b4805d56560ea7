// The widget's view: header (topic, state, unread, who is here), the feed and the
// compose box.
//
// Every received string is put on the page as text (textContent, attributes through
// the DOM API) or as the DOM fragment of the Markdown renderer (which sanitizes),
// never parsed as HTML here; shared code is shown as code and never run.
//
// The feed groups messages by author and minute, separates days, sticks to the
// bottom unless the reader scrolled up (then a "new messages" pill), collapses long
// messages, pages back with "load earlier", and offers edit and delete in place.

import { Subject } from "./constants.js";
import { renderCell } from "./cells.js";
import { followButton } from "./follow.js";
import { clip, compactJson, copyText, describe, h } from "./dom.js";
import { MUTE, continues, dayLabel, muteLine, sameDay } from "./conversation.js";
import { renderMarkdown } from "./markdown.js";
import { completeMention, suggestions, typedMention } from "./mentions.js";
import { notebookOf } from "./notebook.js";
import { typingLine } from "./typing.js";
import { Unread } from "./unread.js";

/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./client.js").Members} Members */
/** @typedef {import("./widget.js").View} View */
/** @typedef {import("./widget.js").Room} Room */
/** @typedef {import("./conversation.js").Item} Item */

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

/** The header's note beside the link that signs in to a channels service under JupyterHub. */
export const SIGN_IN_NOTE = "the channels service needs you to sign in; this widget connects once you have";
/** The header's words while the kernel relays and does not answer (it runs a cell). */
export const KERNEL_BUSY = "kernel busy, messages wait";

/** The feed keeps at most this many messages on the page. */
export const MAX_SHOWN = 500;


/** A message longer than this (characters or lines) is shown collapsed, with "show more". */
const LONG_CHARS = 1_200;
const LONG_LINES = 16;
/** How close to the bottom (px) counts as at the bottom. */
const STICK_PX = 24;
/** How long the "Mute" control of a message mutes its author. */
const MUTE_SECONDS = 600;

const INSERT_TITLE = "Insert the code as a new cell at the end of the notebook (not run)";
const NOTIFY_TITLE = "Show a browser notification when someone mentions you while this page is hidden";

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
 * Controls other modules put in the header (after the unread badge): each is called
 * once per view with the room and returns its element, or null.
 * @type {((room: Room) => HTMLElement | null)[]}
 */
export const headerTools = [];

let ids = 0;
/** @param {string} prefix */
function uniqueId(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/**
 * @param {string} text
 * @param {string} className
 * @param {string} [title]
 */
function button(text, className, title) {
  const element = h("button", className, text);
  element.type = "button";
  if (title) {
    element.title = title;
    element.setAttribute("aria-label", title);
  }
  return element;
}

/**
 * A text message's body as plain text, `@name` as a mention span (where Markdown
 * cannot be rendered).
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function plainText(text) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(/(^|[^A-Za-z0-9_.`-])@([A-Za-z0-9_.-]*[A-Za-z0-9_-])/g)) {
    const at = /** @type {number} */ (match.index) + match[1].length;
    fragment.append(text.slice(last, at));
    const span = h("span", "jc-mention", `@${match[2]}`);
    span.dataset.user = match[2];
    fragment.append(span);
    last = at + match[2].length + 1;
  }
  fragment.append(text.slice(last));
  return fragment;
}

/**
 * The rendered text of a message: its Markdown, sanitized (js/markdown.js).
 * @param {string} text
 * @returns {{fragment: DocumentFragment, markdown: boolean}}
 */
function renderText(text) {
  try {
    return { fragment: renderMarkdown(text), markdown: true };
  } catch (error) {
    console.error("jupyter-channels: cannot render Markdown", error);
    return { fragment: plainText(text), markdown: false };
  }
}

/**
 * Copy and "Insert as cell" on each code block of a rendered text.
 * @param {HTMLElement} body
 * @param {Room} room
 */
function decorateCode(body, room) {
  const notebook = notebookOf(room.model);
  for (const pre of body.querySelectorAll("pre.jc-codeblock")) {
    const code = pre.querySelector("code") ?? pre;
    const source = (code.textContent ?? "").replace(/\n$/, "");
    const bar = h("div", "jc-codebar");
    const lang = /** @type {HTMLElement} */ (pre).dataset.lang;
    if (lang) bar.append(h("span", "jc-lang", lang));
    const copy = button("Copy", "jc-copy", "Copy the code");
    copy.addEventListener("click", () => copyText(source, /** @type {HTMLElement} */ (code), copy));
    bar.append(copy);
    if (notebook) {
      const insert = button("Insert as cell", "jc-insert", INSERT_TITLE);
      insert.addEventListener("click", () => {
        try {
          notebook.insertCell(source);
          insert.textContent = "Inserted";
        } catch (error) {
          room.notice = `not inserted: ${describe(error)}`;
          room._update();
        }
      });
      bar.append(insert);
    }
    const wrap = h("div", "jc-codewrap");
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }
}

/**
 * @param {Item} item
 * @param {Room} room
 * @returns {HTMLElement}
 */
function renderBody(item, room) {
  const message = item.message;
  /** @type {any} */
  const payload = message.payload;
  if (message.subject === Subject.TEXT && item.deletion) {
    const gone = h("div", "jc-deleted", "message deleted");
    const by = item.deletion.from;
    if (by && by.user !== message.from?.user) gone.title = `deleted by ${by.name || by.user}`;
    return gone;
  }
  if (message.subject === Subject.TEXT && item.text !== null) {
    const text = clip(item.text);
    const body = h("div", "jc-text");
    const { fragment, markdown } = renderText(text);
    body.classList.toggle("jc-md", markdown);
    body.append(fragment);
    decorateCode(body, room);
    for (const span of body.querySelectorAll(".jc-mention")) {
      if (room.me.user && /** @type {HTMLElement} */ (span).dataset.user === room.me.user) {
        span.classList.add("jc-mention-me");
      }
    }
    if (text.length > LONG_CHARS || text.split("\n").length > LONG_LINES) {
      const box = h("div", "jc-long");
      body.classList.add("jc-collapsed");
      const more = button("Show more", "jc-more");
      more.setAttribute("aria-expanded", "false");
      more.addEventListener("click", () => {
        const open = body.classList.toggle("jc-collapsed") === false;
        more.textContent = open ? "Show less" : "Show more";
        more.setAttribute("aria-expanded", String(open));
      });
      box.append(body, more);
      return box;
    }
    return body;
  }
  if (message.subject === Subject.CELL && payload && typeof payload === "object") {
    return renderCell(payload, { control: followButton(room.follow, message, room.isMine(message)) });
  }
  if (message.subject === MUTE) return h("div", "jc-system", muteLine(message));
  const body = h("div", "jc-other");
  body.append(h("span", "jc-subject", String(message.subject)), h("code", "jc-json", compactJson(payload)));
  return body;
}

/**
 * @param {Item} item
 * @param {Room} room
 * @param {ItemHooks} hooks
 * @returns {HTMLElement}
 */
function renderItem(item, room, hooks) {
  const message = item.message;
  const el = h("div", "jc-msg");
  el.tabIndex = -1;
  el.dataset.key = item.key;
  if (typeof message.offset === "number") el.dataset.offset = String(message.offset);
  el.dataset.subject = String(message.subject);
  if (message.from?.user) el.dataset.user = message.from.user;
  const mine = room.isMine(message);
  el.classList.toggle("jc-mine", mine);
  el.classList.toggle("jc-mentions-me", !mine && room.mentionsMe(message, item.text));
  if (message.subject === MUTE) el.classList.add("jc-sys");
  const meta = h("div", "jc-meta");
  const author = h("span", "jc-author", String(message.from?.name ?? message.from?.user ?? "?"));
  if (message.from?.kind) author.dataset.kind = String(message.from.kind);
  const when = new Date(typeof message.ts === "number" ? message.ts : Date.now());
  const time = h("time", "jc-time", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  meta.append(author, time);
  el.append(meta, renderBody(item, room));
  if (item.edit && !item.deletion) {
    const edited = h("span", "jc-edited", "edited");
    const by = item.edit.from;
    const at = new Date(typeof item.edit.ts === "number" ? item.edit.ts : Date.now()).toLocaleString();
    edited.title = by && by.user !== message.from?.user ? `edited by ${by.name || by.user}, ${at}` : `edited ${at}`;
    el.append(edited);
  }
  // Edit, delete and mute: for those who may send (the server decides the rest).
  if (message.subject === Subject.TEXT && typeof message.offset === "number" && !item.deletion && room.canSend) {
    el.append(hooks.actions(item, mine));
  }
  return el;
}

/**
 * What an item's controls do (the view's edit box, confirm and notices).
 * @typedef {{actions: (item: Item, mine: boolean) => HTMLElement}} ItemHooks
 */

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
    avatar.setAttribute("role", "img");
    avatar.setAttribute("aria-label", avatar.title);
    if (metas.length > 1) avatar.append(h("span", "jc-badge", String(metas.length)));
    box.append(avatar);
  }
  count.textContent = `${users.length} here`;
  count.dataset.count = String(users.length);
}

/**
 * The people a mention may name: those here, then recent authors (newest first).
 * @param {Room} room
 */
function people(room) {
  /** @type {{user: string, name: string}[]} */
  const found = [];
  for (const [user, metas] of Object.entries(room.members)) {
    if (metas.length) found.push({ user, name: String(metas[0].name || user) });
  }
  const items = room.conversation.items;
  for (let i = items.length - 1; i >= 0 && found.length < 200; i--) {
    const from = items[i].message.from;
    if (from?.user && from.kind !== "kernel") found.push({ user: from.user, name: String(from.name || from.user) });
  }
  return found;
}

/** The browser's notification permission, or null where there are none. */
function notificationPermission() {
  return typeof Notification === "undefined" ? null : Notification.permission;
}

/**
 * One view of a room.
 * @param {Room} room
 * @param {HTMLElement} el
 * @returns {() => void} cleanup
 */
export function mount(room, el) {
  const root = h("div", "jc-widget");
  const header = h("div", "jc-header");
  const topic = h("span", "jc-topic");
  const state = h("span", "jc-state");
  const dot = h("span", "jc-dot");
  const stateText = h("span", "jc-state-text");
  state.append(dot, stateText);
  // Messages and mentions since the reader last looked.
  const unreadBadge = h("span", "jc-unread");
  unreadBadge.setAttribute("role", "status");
  unreadBadge.hidden = true;
  const tools = h("span", "jc-tools");
  const notify = button("Notify me", "jc-notify", NOTIFY_TITLE);
  tools.append(notify);
  for (const tool of headerTools) {
    const control = tool(room);
    if (control) tools.append(control);
  }
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
  header.append(topic, state, unreadBadge, tools, presence, refusal);
  const notice = h("div", "jc-notice");
  notice.setAttribute("role", "alert");
  const feedBox = h("div", "jc-feed-box");
  const feed = h("div", "jc-feed");
  feed.setAttribute("role", "log");
  feed.setAttribute("aria-live", "polite");
  feed.setAttribute("aria-relevant", "additions");
  feed.tabIndex = 0;
  feed.setAttribute("data-lm-suppress-shortcuts", "true");
  const earlier = button("Load earlier messages", "jc-earlier");
  const pill = button("New messages ↓", "jc-pill", "Scroll to the newest messages");
  pill.hidden = true;
  feedBox.append(feed, pill);
  const typingRow = h("div", "jc-typing");
  typingRow.setAttribute("aria-live", "polite");
  const suggest = h("div", "jc-suggest");
  suggest.id = uniqueId("jc-suggest");
  suggest.setAttribute("role", "listbox");
  suggest.setAttribute("aria-label", "People to mention");
  suggest.hidden = true;
  const compose = h("div", "jc-compose");
  // Typing here must not trigger JupyterLab's notebook shortcuts (Lumino honours this).
  compose.setAttribute("data-lm-suppress-shortcuts", "true");
  const input = h("textarea", "jc-input");
  input.rows = 1;
  input.autocomplete = "off";
  input.setAttribute("aria-label", "Message");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", suggest.id);
  input.setAttribute("aria-expanded", "false");
  const send = button("Send", "jc-send");
  const shareButton = button("Share a cell", "jc-share");
  shareButton.title = "Share one of this kernel's recent cells with the topic";
  const readOnly = h("span", "jc-readonly", "read-only");
  readOnly.title = READ_ONLY_NOTE;
  compose.append(input, send, shareButton, readOnly);
  // The picker lists the kernel's recent inputs; choosing one shares it (never runs it).
  const picker = h("div", "jc-picker");
  picker.hidden = true;
  picker.setAttribute("data-lm-suppress-shortcuts", "true");
  root.append(header, notice, feedBox, typingRow, suggest, compose, picker);
  el.append(root);

  /** @type {Map<string, HTMLElement>} the feed's element of each item */
  const elements = new Map();
  /** @type {Map<string, HTMLElement>} the day separator before an item that starts a day */
  const days = new Map();
  const unread = new Unread();
  let intersecting = false;
  /** @type {string | null} the item whose edit box is open */
  let editing = null;

  const atBottom = () => feed.scrollHeight - feed.scrollTop - feed.clientHeight < STICK_PX;
  const toBottom = () => {
    feed.scrollTop = feed.scrollHeight;
    pill.hidden = true;
  };
  const looking = () => intersecting && document.visibilityState === "visible";

  /** @param {string} text */
  const showNotice = (text) => {
    room.notice = text;
    room._update();
  };

  /**
   * The edit, delete and mute controls of a text message (shown to everyone: the
   * server says who may, and a refusal is a notice).
   * @type {ItemHooks}
   */
  const hooks = {
    actions(item, mine) {
      const offset = /** @type {number} */ (item.message.offset);
      const bar = h("div", "jc-actions");
      const edit = button("Edit", "jc-edit", "Edit this message");
      const remove = button("Delete", "jc-delete", "Delete this message");
      edit.addEventListener("click", () => openEditor(item));
      remove.addEventListener("click", () => {
        const ask = h("span", "jc-confirm", "Delete this message?");
        const yes = button("Delete", "jc-confirm-yes");
        const no = button("Cancel", "jc-confirm-no");
        no.addEventListener("click", () => ask.replaceWith(...buttons));
        yes.addEventListener("click", () => {
          room.delete(offset).catch((error) => showNotice(`not deleted: ${describe(error)}`));
          ask.replaceWith(...buttons);
        });
        ask.append(yes, no);
        bar.replaceChildren(ask);
        yes.focus();
      });
      /** @type {HTMLElement[]} */
      const buttons = [edit, remove];
      const user = item.message.from?.user;
      if (!mine && user) {
        const mute = button("Mute", "jc-mute", `Mute ${user} in this topic for 10 min (moderators)`);
        mute.addEventListener("click", () => {
          room.mute(user, MUTE_SECONDS).catch((error) => showNotice(`not muted: ${describe(error)}`));
        });
        buttons.push(mute);
      }
      bar.append(...buttons);
      return bar;
    },
  };

  /** @param {Item} item */
  const openEditor = (item) => {
    const element = elements.get(item.key);
    if (!element || item.text === null) return;
    editing = item.key;
    const offset = /** @type {number} */ (item.message.offset);
    const box = h("div", "jc-editor");
    box.setAttribute("data-lm-suppress-shortcuts", "true");
    const area = h("textarea", "jc-edit-input");
    area.value = item.text;
    area.setAttribute("aria-label", "Edit message");
    const save = button("Save", "jc-save");
    const cancel = button("Cancel", "jc-cancel");
    box.append(area, save, cancel);
    const close = () => {
      editing = null;
      const current = room.conversation.get(item.key);
      if (current) replace(current);
    };
    const commit = () => {
      const text = area.value;
      if (!text.trim() || text === item.text) return close();
      save.disabled = true;
      room.edit(offset, text).then(close, (error) => {
        save.disabled = false;
        showNotice(`not edited: ${describe(error)}`);
      });
    };
    area.addEventListener("keydown", (event) => {
      event.stopPropagation();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        commit();
      } else if (event.key === "Escape") {
        event.preventDefault();
        close();
      }
    });
    save.addEventListener("click", commit);
    cancel.addEventListener("click", close);
    const body = element.querySelector(".jc-text, .jc-long");
    element.querySelector(".jc-actions")?.remove();
    element.querySelector(".jc-edited")?.remove();
    if (body) body.replaceWith(box);
    else element.append(box);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  };

  /**
   * Group `element` with the item before it, or start a group, after a day separator
   * when it starts a day (the separator goes just before it: in the feed when the
   * element is, else with it through `nodesOf`).
   * @param {HTMLElement} element
   * @param {Item | null} previous
   * @param {Item} item
   */
  const decorate = (element, previous, item) => {
    const newDay = !previous || !sameDay(previous.message.ts, item.message.ts);
    element.classList.toggle("jc-continued", !newDay && continues(previous?.message, item.message));
    const day = days.get(item.key);
    if (newDay && typeof item.message.ts === "number") {
      const separator = day ?? h("div", "jc-day");
      separator.textContent = dayLabel(item.message.ts, Date.now());
      separator.setAttribute("role", "separator");
      days.set(item.key, separator);
      if (!separator.isConnected && element.isConnected) element.before(separator);
    } else {
      day?.remove();
      days.delete(item.key);
    }
  };

  /**
   * An item's nodes for the feed: its day separator, if any, and its element.
   * @param {Item} item
   * @param {HTMLElement} element
   */
  const nodesOf = (item, element) => {
    const day = days.get(item.key);
    return day ? [day, element] : [element];
  };

  /** @param {Item} item */
  const previousOf = (item) => {
    const items = room.conversation.items;
    const index = items.indexOf(item);
    return index > 0 ? items[index - 1] : null;
  };

  /** @param {Item} item */
  const build = (item) => {
    const element = renderItem(item, room, hooks);
    elements.set(item.key, element);
    return element;
  };

  /** @param {Item} item */
  const replace = (item) => {
    const old = elements.get(item.key);
    if (!old) return;
    const element = build(item);
    decorate(element, previousOf(item), item);
    old.replaceWith(element);
  };

  /** Re-group the feed's first item (after a prepend or a trim). */
  const decorateFirst = () => {
    const first = room.conversation.items[0];
    const element = first && elements.get(first.key);
    if (element) decorate(element, null, first);
  };

  const updateUnread = () => {
    unreadBadge.textContent = unread.label;
    unreadBadge.hidden = !unread.label;
    unreadBadge.classList.toggle("jc-unread-mention", unread.mentions > 0);
    root.dataset.unread = String(unread.messages);
    root.dataset.mentions = String(unread.mentions);
  };

  const lookedNow = () => {
    if (!looking() || !unread.messages) return;
    unread.clear();
    updateUnread();
  };

  /** @type {View} */
  const view = {
    reset() {
      elements.clear();
      days.clear();
      editing = null;
      /** @type {Item | null} */
      let previous = null;
      const built = [];
      for (const item of room.conversation.items) {
        const element = build(item);
        decorate(element, previous, item);
        built.push(...nodesOf(item, element));
        previous = item;
      }
      feed.replaceChildren(earlier, ...built);
      toBottom();
      view.update();
    },
    append(item, live) {
      const stick = atBottom();
      const element = build(item);
      decorate(element, previousOf(item), item);
      feed.append(...nodesOf(item, element));
      const mine = room.isMine(item.message);
      if (stick || mine) toBottom();
      else if (live) pill.hidden = false;
      if (live && item.message.subject !== MUTE) {
        const mentionsMe = !mine && room.mentionsMe(item.message, item.text);
        if (unread.saw({ mine, mentionsMe, looking: looking() })) updateUnread();
      }
    },
    change(item) {
      if (editing === item.key && !item.deletion) return;
      if (editing === item.key) editing = null;
      const stick = atBottom();
      replace(item);
      if (stick) toBottom();
    },
    prepend(items) {
      const before = feed.scrollHeight;
      const top = feed.scrollTop;
      /** @type {Item | null} */
      let previous = null;
      const built = [];
      for (const item of items) {
        const element = build(item);
        decorate(element, previous, item);
        built.push(...nodesOf(item, element));
        previous = item;
      }
      earlier.after(...built);
      const next = room.conversation.items[items.length];
      const nextElement = next && elements.get(next.key);
      if (nextElement) decorate(nextElement, previous, next);
      feed.scrollTop = top + (feed.scrollHeight - before);
    },
    remove(items) {
      for (const item of items) {
        elements.get(item.key)?.remove();
        elements.delete(item.key);
        days.get(item.key)?.remove();
        days.delete(item.key);
      }
      decorateFirst();
    },
    update() {
      topic.textContent = room.topic;
      topic.title = room.topic;
      feed.setAttribute("aria-label", `Messages in ${room.topic}`);
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
          ? `Message ${room.topic} (Shift+Enter: new line, @: mention)`
          : READ_ONLY_NOTE;
      const names = room.typists.names(Date.now());
      typingRow.textContent = typingLine(names);
      typingRow.dataset.count = String(names.length);
      earlier.hidden = room.noEarlier || room.conversation.oldest === null;
      earlier.disabled = room.loadingEarlier;
      earlier.textContent = room.loadingEarlier ? "Loading…" : "Load earlier messages";
      const permission = notificationPermission();
      notify.hidden = permission === null || permission === "granted" || permission === "denied";
    },
  };

  // -- the compose box ------------------------------------------------------------------------

  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight + 2}px`;
  };

  const submit = () => {
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    grow();
    closeSuggestions();
    room.notice = "";
    view.update();
    room.send(text).catch((error) => {
      room.notice = `not sent: ${describe(error)}`;
      if (!input.value) input.value = text;
      grow();
      room._update();
    });
  };

  /** @type {{start: number, choices: {user: string, name: string}[], index: number} | null} */
  let mention = null;
  const closeSuggestions = () => {
    mention = null;
    suggest.hidden = true;
    suggest.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  };
  const showSuggestions = () => {
    if (!mention) return closeSuggestions();
    const current = mention;
    suggest.replaceChildren(
      ...current.choices.map((person, index) => {
        const option = h("div", "jc-option");
        option.id = `${suggest.id}-${index}`;
        option.setAttribute("role", "option");
        option.setAttribute("aria-selected", String(index === current.index));
        option.dataset.user = person.user;
        option.append(h("span", "jc-option-name", person.name), h("span", "jc-option-user", `@${person.user}`));
        // Before the box loses focus.
        option.addEventListener("mousedown", (event) => {
          event.preventDefault();
          pick(index);
        });
        return option;
      }),
    );
    suggest.hidden = false;
    input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-activedescendant", `${suggest.id}-${current.index}`);
  };
  const findMention = () => {
    const typed = typedMention(input.value, input.selectionStart ?? input.value.length);
    const choices = typed ? suggestions(typed.query, people(room), room.me.user) : [];
    if (!typed || !choices.length) return closeSuggestions();
    mention = { start: typed.start, choices, index: 0 };
    showSuggestions();
  };
  /** @param {number} index */
  const pick = (index) => {
    if (!mention) return;
    const person = mention.choices[index];
    const caret = input.selectionStart ?? input.value.length;
    const done = completeMention(input.value, caret, mention.start, person.user);
    input.value = done.value;
    input.setSelectionRange(done.caret, done.caret);
    closeSuggestions();
    grow();
    input.focus();
  };

  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (mention) {
      const n = mention.choices.length;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        mention.index = (mention.index + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
        return showSuggestions();
      }
      if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        return pick(mention.index);
      }
      if (event.key === "Escape") {
        event.preventDefault();
        return closeSuggestions();
      }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", () => {
    grow();
    findMention();
    if (input.value.trim()) room.typing();
  });
  input.addEventListener("blur", () => closeSuggestions());
  send.addEventListener("click", submit);

  // -- the feed -------------------------------------------------------------------------------

  feed.addEventListener("scroll", () => {
    if (atBottom()) pill.hidden = true;
  });
  pill.addEventListener("click", () => {
    toBottom();
    lookedNow();
  });
  earlier.addEventListener("click", () => room.loadEarlier());
  // Up and down move between messages; Escape goes back to the compose box.
  feed.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLTextAreaElement) return;
    const items = [...feed.querySelectorAll(":scope > .jc-msg")];
    if (!items.length) return;
    const current = /** @type {Element} */ (event.target).closest?.(".jc-msg");
    const index = current ? items.indexOf(current) : -1;
    /** @type {Element | undefined} */
    let next;
    if (event.key === "ArrowDown") next = items[Math.min(items.length - 1, index + 1)];
    else if (event.key === "ArrowUp") next = items[index < 0 ? items.length - 1 : Math.max(0, index - 1)];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    else if (event.key === "Escape") {
      input.focus();
      event.preventDefault();
      return;
    } else return;
    event.preventDefault();
    event.stopPropagation();
    /** @type {HTMLElement} */ (next).focus();
  });

  // -- unread and notifications --------------------------------------------------------------

  /** @type {IntersectionObserver | null} */
  let observer = null;
  if (typeof IntersectionObserver !== "undefined") {
    observer = new IntersectionObserver((entries) => {
      for (const entry of entries) intersecting = entry.isIntersecting;
      lookedNow();
    });
    observer.observe(root);
  } else {
    intersecting = true;
  }
  const onVisibility = () => lookedNow();
  document.addEventListener("visibilitychange", onVisibility);
  notify.addEventListener("click", () => {
    if (typeof Notification === "undefined") return;
    Notification.requestPermission().then(() => view.update(), () => view.update());
  });

  // -- sharing a cell -------------------------------------------------------------------------

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
    observer?.disconnect();
    document.removeEventListener("visibilitychange", onVisibility);
    root.remove();
  };
}
