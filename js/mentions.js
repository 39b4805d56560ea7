// @mentions: who a text names, what the compose box suggests while one is typed.

/** A username as a mention spells it (the same as js/markdown.js's). */
const NAME = "[A-Za-z0-9_.-]+";
const MENTION_RE = new RegExp(`(^|[^A-Za-z0-9_.\`-])@(${NAME})`, "g");
/** The mention being typed: `@` at the start or after a space, up to the caret. */
const TYPED_RE = /(^|\s)@([A-Za-z0-9_.-]*)$/;
/** Suggestions shown at most. */
export const MAX_SUGGESTIONS = 6;

/**
 * Text without its code (fenced blocks and inline spans), where `@x` is no mention.
 * @param {string} text
 */
function withoutCode(text) {
  const fences = /(^|\n) {0,3}(```|~~~)[\s\S]*?(\n {0,3}\2|$(?![\s\S]))/g;
  return text.replace(fences, " ").replace(/`[^`\n]*`/g, " ");
}

/**
 * The usernames a text mentions (outside code), each once, in order.
 * @param {string} text
 * @returns {string[]}
 */
export function mentionsOf(text) {
  /** @type {string[]} */
  const names = [];
  for (const match of withoutCode(text).matchAll(MENTION_RE)) {
    // A trailing dot ends the sentence, not the name.
    const name = match[2].replace(/\.+$/, "");
    if (name && !names.includes(name)) names.push(name);
  }
  return names;
}

/**
 * Whether `text` mentions `user`.
 * @param {string} text
 * @param {string | null} user
 */
export function mentions(text, user) {
  return Boolean(user) && mentionsOf(text).includes(/** @type {string} */ (user));
}

/**
 * The mention being typed before the caret: where its `@` is and what follows it.
 * @param {string} value
 * @param {number} caret
 * @returns {{start: number, query: string} | null}
 */
export function typedMention(value, caret) {
  const match = TYPED_RE.exec(value.slice(0, caret));
  if (!match) return null;
  return { start: caret - match[2].length - 1, query: match[2] };
}

/** @typedef {{user: string, name: string}} Person */

/**
 * Whom to suggest for `query`: people whose username or a word of whose name starts
 * with it (case-insensitive), present people first, at most MAX_SUGGESTIONS.
 * @param {string} query
 * @param {Person[]} people present people first, then recent authors; repeats are dropped
 * @param {string | null} me left out
 * @returns {Person[]}
 */
export function suggestions(query, people, me) {
  const q = query.toLowerCase();
  /** @type {Person[]} */
  const found = [];
  const seen = new Set();
  for (const person of people) {
    if (!person.user || seen.has(person.user) || person.user === me) continue;
    seen.add(person.user);
    const words = [person.user, ...person.name.split(/\s+/)].map((w) => w.toLowerCase());
    if (!q || words.some((w) => w.startsWith(q))) found.push(person);
    if (found.length >= MAX_SUGGESTIONS) break;
  }
  return found;
}

/**
 * The compose box's value with the mention at `start` completed to `@user `.
 * @param {string} value
 * @param {number} caret
 * @param {number} start
 * @param {string} user
 * @returns {{value: string, caret: number}}
 */
export function completeMention(value, caret, start, user) {
  const before = `${value.slice(0, start)}@${user} `;
  const after = value.slice(caret).replace(/^\s/, "");
  return { value: before + after, caret: before.length };
}
