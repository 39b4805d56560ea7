// The Room's conversation state: who this page is, typing of others (never its own),
// edits and deletes reaching its views, mentions of the viewer.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Socket } from "../client.js";
import { Event, MAX_BACKOFF_MS } from "../constants.js";
import { Room } from "../widget.js";
import { FakeClock, FakeEnvironment, FakeWebSocket, settle } from "./fakes.js";

/** A widget model with a topic and nothing else. */
function model() {
  const get = (/** @type {string} */ key) => (key === "topic" ? "t" : undefined);
  return /** @type {any} */ ({ get, on() {}, off() {} });
}

/**
 * @param {number | null} offset
 * @param {string} subject
 * @param {unknown} payload
 * @param {string} [user]
 * @returns {any}
 */
function frame(offset, subject, payload, user = "alice") {
  const from = { id: `conn-${user}`, user, name: user, kind: "browser" };
  /** @type {any} */
  const message = { topic: "t", subject, payload, offset, ts: Date.now(), from };
  if (offset === null) message.ephemeral = true;
  return message;
}

/** A view that records what it was told. */
function recorder() {
  /** @type {string[]} */
  const log = [];
  const view = {
    log,
    reset: () => log.push("reset"),
    append: (/** @type {any} */ item, /** @type {boolean} */ live) => log.push(`append ${item.key} ${live}`),
    change: (/** @type {any} */ item) => log.push(`change ${item.key} ${item.text}`),
    prepend: (/** @type {any[]} */ items) => log.push(`prepend ${items.map((i) => i.key)}`),
    remove: (/** @type {any[]} */ items) => log.push(`remove ${items.map((i) => i.key)}`),
    update: () => {},
  };
  return view;
}

describe("Room", () => {
  test("shows others typing, never itself, and forgets them when their message comes", () => {
    const room = new Room(model());
    room.me = { user: "alice", id: "conn-alice" };
    room._append(frame(null, "typing", {}, "alice"), true);
    assert.deepEqual(room.typists.names(Date.now()), []);
    room._append(frame(null, "typing", {}, "bob"), true);
    assert.deepEqual(room.typists.names(Date.now()), ["bob"]);
    room._append(frame(1, "text", { text: "hi" }, "bob"), true);
    assert.deepEqual(room.typists.names(Date.now()), []);
    assert.equal(room.conversation.items.length, 1);
    room.dispose();
  });

  test("learns who it is from the echo of a message it sent, before or after the reply", () => {
    const room = new Room(model());
    room._learn({ offset: 4 });
    room._append(frame(4, "text", { text: "mine" }, "alice"), true);
    assert.deepEqual(room.me, { user: "alice", id: "conn-alice" });
    const other = new Room(model());
    other._append(frame(7, "text", { text: "mine" }, "carol"), true);
    other._learn({ offset: 7 });
    assert.deepEqual(other.me, { user: "carol", id: "conn-carol" });
    assert.ok(other.isMine(frame(8, "text", { text: "x" }, "carol")));
    assert.ok(!other.isMine(frame(9, "text", { text: "x" }, "dave")));
    // Connections on the kernel token share a username: only the id is this page's.
    const kernel = new Room(model());
    kernel._learn({ offset: 3 });
    /** @param {string} id @param {string} name */
    const on = (id, name) => ({ id, user: "kernel", name, kind: "kernel" });
    kernel._append({ ...frame(3, "text", { text: "x" }), from: on("k1", "a.ipynb") }, true);
    assert.deepEqual(kernel.me, { user: "kernel", id: "k1" });
    assert.ok(!kernel.isMine({ ...frame(4, "text", { text: "y" }), from: on("k2", "b.ipynb") }));
    kernel._append({ ...frame(null, "typing", {}), from: on("k1", "a.ipynb") }, true);
    kernel._append({ ...frame(null, "typing", {}), from: on("k2", "b.ipynb") }, true);
    kernel._append({ ...frame(null, "typing", {}), from: on("k3", "c.ipynb") }, true);
    assert.deepEqual(kernel.typists.names(Date.now()), ["b.ipynb", "c.ipynb"]);
    kernel.dispose();
    room.dispose();
    other.dispose();
  });

  test("edits and deletes change items in the views; they are no items", () => {
    const room = new Room(model());
    const view = recorder();
    room.views.add(/** @type {any} */ (view));
    room._append(frame(1, "text", { text: "helo" }), false);
    room._append(frame(2, "edit", { offset: 1, text: "hello" }), true);
    room._append(frame(3, "delete", { offset: 1 }, "mod"), true);
    assert.deepEqual(view.log, ["append 1 false", "change 1 hello", "change 1 null"]);
    room.dispose();
  });

  test("a mention of the viewer is one, also after an edit adds it", () => {
    const room = new Room(model());
    room.me = { user: "alice", id: null };
    assert.ok(room.mentionsMe(frame(1, "text", { text: "hey @alice" }, "bob")));
    assert.ok(!room.mentionsMe(frame(1, "text", { text: "hey @alicia" }, "bob")));
    assert.ok(room.mentionsMe(frame(1, "text", { text: "hey" }, "bob"), "hey @alice"));
    room.dispose();
  });
});

describe("Room after a reconnect", () => {
  test("edits and deletes recovered with `since` change what is shown; earlier pages too", async () => {
    FakeWebSocket.reset();
    const clock = new FakeClock();
    const socket = new Socket("ws://127.0.0.1:8888/api/channels/websocket", {
      WebSocket: FakeWebSocket,
      clock,
      env: new FakeEnvironment(),
      random: () => 0,
      heartbeatInterval: 0,
    });
    FakeWebSocket.last.open();
    const room = new Room(model());
    room.socket = socket;
    const view = recorder();
    room.views.add(/** @type {any} */ (view));
    const joining = room.switchTopic("t");
    let ws = FakeWebSocket.last;
    // A full first page: there may be earlier messages.
    const history = Array.from({ length: 50 }, (_, i) => frame(i + 3, "text", { text: `m${i + 3}` }));
    ws.ok(ws.lastSent(Event.JOIN, { topic: "t" }), { offset: 52, epoch: "e", messages: history });
    await joining;
    assert.equal(room.conversation.items.length, 50);
    assert.ok(!room.noEarlier);

    // The connection drops; meanwhile 51 is edited and 52 deleted.
    ws.drop();
    for (let i = 0; i < MAX_BACKOFF_MS && FakeWebSocket.made.length === 1; i++) clock.tick(1);
    ws = FakeWebSocket.last;
    ws.open();
    const rejoin = ws.lastSent(Event.JOIN, { topic: "t" });
    assert.equal(rejoin.since, 52);
    const missed = [frame(53, "edit", { offset: 51, text: "one!" }), frame(54, "delete", { offset: 52 })];
    ws.ok(rejoin, { offset: 54, epoch: "e", messages: missed });
    await settle();
    assert.deepEqual(
      room.conversation.items.slice(-2).map((i) => [i.key, i.text]),
      [
        ["51", "one!"],
        ["52", null],
      ],
    );
    assert.equal(room.conversation.items.length, 50);
    assert.ok(view.log.includes("change 51 one!"));
    assert.ok(view.log.includes("change 52 null"));

    // "Load earlier" asks for the page before the oldest offset seen.
    const earlier = room.loadEarlier();
    const request = ws.lastSent(Event.HISTORY, { topic: "t" });
    assert.deepEqual(request.payload, { limit: 50, before: 3 });
    const page = [frame(1, "text", { text: "older" }), frame(2, "edit", { offset: 1, text: "older!" })];
    ws.ok(request, { messages: page });
    await earlier;
    assert.deepEqual(
      room.conversation.items.slice(0, 2).map((i) => i.text),
      ["older!", "m3"],
    );
    assert.ok(view.log.includes("prepend 1"));
    assert.ok(room.noEarlier);
    room.dispose();
    socket.close();
  });
});
