// The feed's model: edits and deletes apply to the messages they name, in any order;
// running cells stay one item; grouping and day separators.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Conversation, continues, dayLabel, muteLine } from "../conversation.js";

const T0 = Date.UTC(2026, 0, 5, 12, 0, 0);

/**
 * A stored message.
 * @param {number | null} offset
 * @param {string} subject
 * @param {unknown} payload
 * @param {{user?: string, ts?: number, ephemeral?: boolean}} [options]
 * @returns {any}
 */
function msg(offset, subject, payload, { user = "ada", ts = T0 + (offset ?? 0) * 1000, ephemeral } = {}) {
  const frame = /** @type {any} */ ({
    topic: "t",
    subject,
    payload,
    offset,
    ts,
    from: { id: `c-${user}`, user, name: user, kind: "browser" },
  });
  if (ephemeral) frame.ephemeral = true;
  return frame;
}

describe("Conversation", () => {
  test("an edit and a delete change the message they name and are no items", () => {
    const c = new Conversation(100);
    c.add(msg(1, "text", { text: "helo" }));
    c.add(msg(2, "text", { text: "second" }));
    const edited = c.add(msg(3, "edit", { offset: 1, text: "hello" }));
    assert.equal(edited.added, null);
    assert.equal(edited.changed?.key, "1");
    assert.equal(c.at(1)?.text, "hello");
    assert.equal(c.at(1)?.edit?.offset, 3);
    const deleted = c.add(msg(4, "delete", { offset: 2 }));
    assert.equal(deleted.changed?.key, "2");
    assert.equal(c.at(2)?.text, null);
    assert.ok(c.at(2)?.deletion);
    assert.deepEqual(
      c.items.map((i) => i.key),
      ["1", "2"],
    );
  });

  test("a delete wins over an edit, whichever came first", () => {
    const c = new Conversation(100);
    c.add(msg(1, "text", { text: "a" }));
    c.add(msg(2, "delete", { offset: 1 }));
    c.add(msg(3, "edit", { offset: 1, text: "b" }));
    assert.equal(c.at(1)?.text, null);
  });

  test("the latest edit is shown, also when an older one arrives later", () => {
    const c = new Conversation(100);
    c.add(msg(1, "text", { text: "a" }));
    c.add(msg(5, "edit", { offset: 1, text: "final" }));
    assert.equal(c.add(msg(3, "edit", { offset: 1, text: "older" })).changed, null);
    assert.equal(c.at(1)?.text, "final");
  });

  test("an earlier page gets the edits and deletes already seen (a late joiner's history)", () => {
    const c = new Conversation(100);
    // The join's history held only the newest messages: the edit of 2, the delete of 1.
    c.add(msg(6, "edit", { offset: 2, text: "two, fixed" }));
    c.add(msg(7, "delete", { offset: 1 }));
    c.add(msg(8, "text", { text: "eight" }));
    assert.equal(c.oldest, 6);
    const { added, changed } = c.prepend([msg(1, "text", { text: "one" }), msg(2, "text", { text: "two" })]);
    assert.deepEqual(
      added.map((i) => i.key),
      ["1", "2"],
    );
    assert.deepEqual(changed, []);
    assert.deepEqual(
      c.items.map((i) => [i.key, i.text]),
      [
        ["1", null],
        ["2", "two, fixed"],
        ["8", "eight"],
      ],
    );
    assert.equal(c.oldest, 1);
  });

  test("messages already shown are not added twice by a page", () => {
    const c = new Conversation(100);
    c.add(msg(3, "text", { text: "three" }));
    const { added } = c.prepend([msg(2, "text", { text: "two" }), msg(3, "text", { text: "three" })]);
    assert.deepEqual(
      added.map((i) => i.key),
      ["2"],
    );
  });

  test("edits of bad shape or of a message that is no text change nothing", () => {
    const c = new Conversation(100);
    c.add(msg(1, "cell", { source: "x" }));
    c.add(msg(2, "text", { text: "t" }));
    assert.equal(c.add(msg(3, "edit", { offset: 1, text: "y" })).changed, null);
    assert.equal(c.add(msg(4, "edit", { offset: "2", text: "y" })).changed, null);
    assert.equal(c.add(msg(5, "edit", { offset: 2 })).changed, null);
    assert.equal(c.at(2)?.text, "t");
  });

  test("a running cell is one item, updated until its stored final frame", () => {
    const c = new Conversation(100);
    const running = msg(null, "cell", { id: "r1", status: "running", outputs: [] }, { ephemeral: true });
    assert.equal(c.add(running).added?.key, "cell:r1");
    const more = msg(null, "cell", { id: "r1", status: "running", outputs: [1] }, { ephemeral: true });
    assert.equal(c.add(more).changed?.key, "cell:r1");
    const final = msg(4, "cell", { id: "r1", status: "ok", outputs: [1, 2] });
    assert.equal(c.add(final).changed?.key, "cell:r1");
    const late = msg(null, "cell", { id: "r1", status: "running", outputs: [] }, { ephemeral: true });
    assert.equal(c.add(late).changed, null);
    assert.equal(c.items.length, 1);
    assert.equal(/** @type {any} */ (c.items[0].message.payload).status, "ok");
  });

  test("other ephemeral frames and typing are not kept", () => {
    const c = new Conversation(100);
    assert.equal(c.add(msg(null, "typing", {}, { ephemeral: true })).added, null);
    assert.equal(c.add(msg(null, "poke", {}, { ephemeral: true })).added, null);
    assert.equal(c.items.length, 0);
  });

  test("keeps at most `max` items, dropping the oldest", () => {
    const c = new Conversation(2);
    c.add(msg(1, "text", { text: "1" }));
    c.add(msg(2, "text", { text: "2" }));
    const { removed } = c.add(msg(3, "text", { text: "3" }));
    assert.deepEqual(
      removed.map((i) => i.key),
      ["1"],
    );
    assert.equal(c.at(1), null);
  });
});

describe("grouping", () => {
  test("the same author within the same minute continues a group", () => {
    const a = msg(1, "text", { text: "a" }, { ts: T0 + 1000 });
    assert.ok(continues(a, msg(2, "text", { text: "b" }, { ts: T0 + 30_000 })));
    assert.ok(!continues(a, msg(2, "text", { text: "b" }, { ts: T0 + 61_000 })));
    assert.ok(!continues(a, msg(2, "text", { text: "b" }, { user: "grace", ts: T0 + 2000 })));
    assert.ok(!continues(null, a));
  });

  test("day labels", () => {
    assert.equal(dayLabel(T0, T0 + 3600_000), "Today");
    assert.equal(dayLabel(T0, T0 + 86_400_000), "Yesterday");
    assert.match(dayLabel(T0, T0 + 5 * 86_400_000), /5/);
  });

  test("a mute message reads as a sentence", () => {
    const mute = (/** @type {number} */ seconds) => msg(1, "mute", { user: "bob", seconds }, { user: "alice" });
    assert.equal(muteLine(mute(600)), "bob was muted for 10 min by alice");
    assert.equal(muteLine(mute(0)), "bob may send again (by alice)");
  });
});
