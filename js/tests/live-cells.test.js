// A room's feed and follow mode with live cells: one item per run, a late running frame
// dropped, only finished cells that arrive live go into the notebook.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Room } from "../widget.js";

/**
 * A widget model on topic "class"; with `cells`, the notebook holding it (JupyterLab's
 * widget manager context, whose YNotebook appends to `cells`).
 * @param {any[] | null} cells
 * @returns {any}
 */
function model(cells) {
  const sharedModel = cells && { cells, addCell: (/** @type {any} */ cell) => cells.push(cell) };
  return {
    get: (/** @type {string} */ key) => (key === "topic" ? "class" : undefined),
    on() {},
    off() {},
    widget_manager: sharedModel ? { context: { model: { sharedModel } } } : {},
  };
}

/**
 * A frame of the live cell "run-1" (running frames are ephemeral, the final one stored).
 * @param {string} status
 * @param {string[]} lines
 * @returns {any}
 */
function frame(status, lines) {
  const running = status === "running";
  return {
    topic: "class",
    subject: "cell",
    offset: running ? null : 7,
    ephemeral: running || undefined,
    ts: Date.UTC(2026, 0, 5, 10, 0, 0),
    from: { user: "ada", name: "Ada", kind: "kernel", id: "k1" },
    payload: {
      id: "run-1",
      status,
      source: "for i in range(3): print(i)",
      language: "python",
      outputs: [{ output_type: "stream", name: "stdout", text: lines.join("") }],
    },
  };
}

/** @param {Room} room */
function watch(room) {
  const seen = { appended: /** @type {any[]} */ ([]), changed: /** @type {any[]} */ ([]) };
  room.views.add({
    reset() {},
    append: (item) => seen.appended.push(item.message),
    change: (item) => seen.changed.push(item.message),
    prepend() {},
    remove() {},
    update() {},
  });
  return seen;
}

describe("a room's live cells", () => {
  test("every frame of a run updates one item; a running frame after the final one is dropped", () => {
    const room = new Room(model(null));
    const seen = watch(room);
    const final = frame("ok", ["0\n", "1\n", "2\n"]);
    room._append(frame("running", []), true);
    room._append(frame("running", ["0\n"]), true);
    room._append(final, true);
    room._append(frame("running", ["0\n", "1\n"]), true);
    assert.equal(room.conversation.items.length, 1);
    assert.equal(room.conversation.items[0].message, final);
    assert.equal(seen.appended.length, 1);
    assert.equal(seen.changed.length, 2);
    assert.equal(seen.changed[1], final);
    room.dispose();
  });

  test("a followed author's finished cell arriving live goes into the notebook, once", () => {
    /** @type {any[]} */
    const cells = [];
    const room = new Room(model(cells));
    assert.ok(room.follow.available);
    // History from before following: not taken, even once following.
    room._append({ ...frame("ok", ["old\n"]), offset: 3, payload: { ...frame("ok", []).payload, id: "old" } }, false);
    room.follow.toggle("ada", "Ada");
    room._append(frame("running", ["0\n"]), true);
    assert.equal(cells.length, 0);
    room._append(frame("ok", ["0\n"]), true);
    room._append(frame("ok", ["0\n"]), true);
    assert.equal(cells.length, 1);
    assert.equal(cells[0].source, "for i in range(3): print(i)");
    assert.deepEqual(cells[0].metadata.tags, ["shared-by-ada-at-2026-01-05T10:00:00Z"]);
    assert.equal(cells[0].execution_count, null);
    room.dispose();
  });

  test("no notebook, no follow", () => {
    const room = new Room(model(null));
    assert.equal(room.follow.available, false);
    room.dispose();
  });
});
