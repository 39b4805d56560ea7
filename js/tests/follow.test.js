// Follow mode: which shared cells go into the follower's notebook, and how they are tagged.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Follow, authorOf, followTag } from "../follow.js";

/** A notebook that records the cells inserted into it. */
function recorder() {
  /** @type {{source: string, metadata: any}[]} */
  const cells = [];
  return {
    cells,
    notebook: {
      /** @param {string} source @param {any} [metadata] */
      insertCell(source, metadata) {
        cells.push({ source, metadata });
      },
      cellCount: () => cells.length,
    },
  };
}

let nextOffset = 1;

/**
 * A `cell` message from `user`.
 * @param {string} user
 * @param {Record<string, unknown>} payload
 * @param {{offset?: number | null, ts?: number}} [extra]
 * @returns {any}
 */
function cell(user, payload, extra = {}) {
  return {
    topic: "class",
    subject: "cell",
    payload: { language: "python", outputs: [], ...payload },
    offset: extra.offset === undefined ? nextOffset++ : extra.offset,
    ts: extra.ts ?? Date.UTC(2026, 2, 1, 9, 30, 5, 123),
    from: { user, name: user.toUpperCase(), kind: "kernel", id: `${user}-1` },
  };
}

describe("followTag", () => {
  test("names the author and the time, without spaces or commas", () => {
    assert.equal(followTag("alice", Date.UTC(2026, 2, 1, 9, 30, 5, 123)), "shared-by-alice-at-2026-03-01T09:30:05Z");
    const odd = followTag("ada lovelace,x", 0);
    assert.equal(odd, "shared-by-ada_lovelace_x-at-1970-01-01T00:00:00Z");
    assert.doesNotMatch(odd, /[\s,]/);
  });
});

describe("Follow", () => {
  test("inserts each finished cell of a followed author, in order, tagged", () => {
    const { cells, notebook } = recorder();
    const follow = new Follow(notebook, "class");
    follow.toggle("alice", "Alice");
    assert.ok(follow.isFollowing("alice"));
    for (const source of ["a = 1", "print(a)", "a + 1"]) {
      assert.equal(follow.receive(cell("alice", { source })), true);
    }
    assert.deepEqual(
      cells.map((c) => c.source),
      ["a = 1", "print(a)", "a + 1"],
    );
    assert.deepEqual(cells[0].metadata.tags, ["shared-by-alice-at-2026-03-01T09:30:05Z"]);
    assert.equal(cells[0].metadata.jupyter_channels.from, "alice");
    assert.equal(cells[0].metadata.jupyter_channels.topic, "class");
  });

  test("takes a live cell's final frame once, never its running frames", () => {
    const { cells, notebook } = recorder();
    const follow = new Follow(notebook);
    follow.toggle("alice");
    const running = { source: "for i in range(9): ...", id: "run-1", status: "running" };
    assert.equal(follow.receive(cell("alice", running, { offset: null })), false);
    assert.equal(follow.receive(cell("alice", { ...running, status: "error" })), true);
    // The same share again (a rejoin's replay): not a second cell.
    assert.equal(follow.receive(cell("alice", { ...running, status: "error" })), false);
    assert.deepEqual(
      cells.map((c) => c.source),
      ["for i in range(9): ..."],
    );
  });

  test("ignores other authors, other subjects, and stops when unfollowed", () => {
    const { cells, notebook } = recorder();
    const follow = new Follow(notebook);
    /** @type {number} */
    let changes = 0;
    follow.onChange(() => changes++);
    follow.toggle("alice");
    assert.equal(follow.receive(cell("bob", { source: "bob's" })), false);
    assert.equal(follow.receive({ ...cell("alice", { source: "x" }), subject: "text" }), false);
    assert.equal(follow.receive(cell("alice", { source: "kept" })), true);
    follow.toggle("alice");
    assert.equal(follow.isFollowing("alice"), false);
    assert.equal(follow.receive(cell("alice", { source: "after unfollow" })), false);
    assert.deepEqual(
      cells.map((c) => c.source),
      ["kept"],
    );
    assert.equal(changes, 2);
  });

  test("kernels on a server's kernel token are told apart by their notebook", () => {
    const { cells, notebook } = recorder();
    const follow = new Follow(notebook);
    /** @param {string} name @param {string} source */
    const fromKernel = (name, source) => ({
      ...cell("kernel", { source }),
      from: { user: "kernel", name, kind: "kernel", id: name },
    });
    const author = authorOf(fromKernel("teacher.ipynb", "x"));
    assert.deepEqual(author, { key: "kernel:teacher.ipynb", name: "teacher.ipynb", tag: "teacher.ipynb" });
    follow.toggle(author?.key ?? "", author?.name);
    assert.equal(follow.receive(fromKernel("student.ipynb", "theirs")), false);
    assert.equal(follow.receive(fromKernel("teacher.ipynb", "the teacher's")), true);
    assert.deepEqual(cells.map((c) => c.source), ["the teacher's"]);
    assert.match(cells[0].metadata.tags[0], /^shared-by-teacher\.ipynb-at-/);
    // A user's own kernel (on a hub, with their token) is the user.
    assert.equal(authorOf(cell("ada", { source: "x" }))?.key, "ada");
  });

  test("is not offered without a notebook", () => {
    const follow = new Follow(null);
    assert.equal(follow.available, false);
    follow.toggle("alice");
    assert.equal(follow.isFollowing("alice"), false);
    assert.equal(follow.receive(cell("alice", { source: "x" })), false);
  });

  test("a failed insert is reported, not thrown", () => {
    const follow = new Follow({
      insertCell() {
        throw new Error("the notebook is no longer open");
      },
      cellCount: () => 0,
    });
    follow.toggle("alice");
    assert.equal(follow.receive(cell("alice", { source: "x" })), false);
    assert.match(follow.error, /no longer open/);
  });
});
