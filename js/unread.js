// The unread badge: messages and mentions that arrived while the viewer did not look
// (the widget out of view, or the page hidden).

export class Unread {
  constructor() {
    this.messages = 0;
    this.mentions = 0;
  }

  /**
   * A message arrived.
   * @param {{mine: boolean, mentionsMe: boolean, looking: boolean}} what
   * @returns {boolean} whether it counts as unread
   */
  saw({ mine, mentionsMe, looking }) {
    if (mine || looking) return false;
    this.messages += 1;
    if (mentionsMe) this.mentions += 1;
    return true;
  }

  /** The viewer looked. */
  clear() {
    this.messages = 0;
    this.mentions = 0;
  }

  /** The badge's words ("" when nothing is unread). */
  get label() {
    if (!this.messages) return "";
    const mentions = this.mentions === 1 ? "1 mention" : `${this.mentions} mentions`;
    return this.mentions ? `${this.messages} new, ${mentions}` : `${this.messages} new`;
  }
}
