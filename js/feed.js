// The widget's view: header (topic, state, who is here), the feed and the compose box.
//
// Every received string is put on the page as text (textContent, attributes through
// the DOM API), never parsed as HTML; a shared cell is shown as code and never run.

import { Subject } from "./constants.js";
import { renderCell } from "./cells.js";
import { clip, compactJson, describe, h } from "./dom.js";

/** @typedef {import("./client.js").Message} Message */
/** @typedef {import("./client.js").Members} Members */
/** @typedef {import("./widget.js").View} View */

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
 * @param {import("./widget.js").Room} room
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
