// "alice is typing": when to send a `typing` frame, and who is typing now.

/** A person typing sends a `typing` frame at most this often. */
export const TYPING_EVERY_MS = 2_000;
/** "is typing" stays this long after someone's last `typing` frame. */
export const TYPING_SHOWN_MS = 5_000;

/** When this page's next `typing` frame is due. */
export class TypingSender {
  constructor() {
    this.last = -Infinity;
  }

  /**
   * Whether to send one now (and, if so, counts it as sent).
   * @param {number} now ms
   */
  due(now) {
    if (now - this.last < TYPING_EVERY_MS) return false;
    this.last = now;
    return true;
  }

  /** The message went: the next keystroke says "typing" again at once. */
  reset() {
    this.last = -Infinity;
  }
}

/** Who is typing: each person until TYPING_SHOWN_MS after their last frame. */
export class Typists {
  constructor() {
    /** @type {Map<string, {name: string, until: number}>} */
    this.people = new Map();
  }

  /**
   * @param {string} user
   * @param {string} name
   * @param {number} now
   */
  saw(user, name, now) {
    this.people.delete(user);
    this.people.set(user, { name: name || user, until: now + TYPING_SHOWN_MS });
  }

  /**
   * They sent their message (or left): no longer typing.
   * @param {string} user
   * @returns {boolean} whether they were shown as typing
   */
  stop(user) {
    return this.people.delete(user);
  }

  clear() {
    this.people.clear();
  }

  /**
   * The names of those typing at `now`, in the order they started; the others are forgotten.
   * @param {number} now
   */
  names(now) {
    for (const [user, { until }] of this.people) {
      if (until <= now) this.people.delete(user);
    }
    return [...this.people.values()].map(({ name }) => name);
  }

  /**
   * In how many ms the next name goes, or null when nobody is typing.
   * @param {number} now
   */
  next(now) {
    let soonest = Infinity;
    for (const { until } of this.people.values()) soonest = Math.min(soonest, until);
    return soonest === Infinity ? null : Math.max(0, soonest - now);
  }
}

/**
 * The line under the feed.
 * @param {string[]} names
 */
export function typingLine(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing`;
}
