// Ephemeral pushes, edit, delete and mute in the client, against a fake WebSocket:
// node --test js/tests/ (tests/client/test_js_conversation.py runs them against a server)

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { ChannelError, Socket } from "../client.js";
import { Event } from "../constants.js";
import { FakeClock, FakeEnvironment, FakeWebSocket, message } from "./fakes.js";

const URL = "ws://127.0.0.1:8888/api/channels/websocket";
const TOPIC = "chat:lobby";

/** @type {FakeClock} */
let clock;
/** @type {FakeEnvironment} */
let env;

beforeEach(() => {
  FakeWebSocket.reset();
  clock = new FakeClock();
  env = new FakeEnvironment();
});

async function joined() {
  const socket = new Socket(URL, {
    WebSocket: FakeWebSocket,
    clock,
    env,
    random: () => 0.5,
    heartbeatInterval: 0,
  });
  FakeWebSocket.last.open();
  const channel = socket.channel(TOPIC);
  const join = channel.join();
  const ws = FakeWebSocket.last;
  ws.ok(ws.lastSent(Event.JOIN), { offset: 0, epoch: "e1", recovered: true, messages: [] });
  await join;
  return { socket, channel, ws };
}

describe("ephemeral pushes", () => {
  test("push with ephemeral sends the flag and resolves with a response without offset", async () => {
    const { channel, ws } = await joined();
    const push = channel.push("typing", {}, { ephemeral: true });
    const frame = ws.lastSent(Event.MESSAGE);
    assert.deepEqual(
      { subject: frame.subject, payload: frame.payload, ephemeral: frame.ephemeral },
      { subject: "typing", payload: {}, ephemeral: true },
    );
    ws.ok(frame, {});
    assert.deepEqual(await push, {});
  });

  test("a push without the option carries no ephemeral field", async () => {
    const { channel, ws } = await joined();
    channel.push("text", { text: "hi" });
    assert.equal("ephemeral" in ws.lastSent(Event.MESSAGE), false);
  });

  test("an ephemeral push while disconnected is refused at once, never buffered", async () => {
    const { channel, ws } = await joined();
    ws.drop();
    await assert.rejects(
      channel.push("typing", {}, { ephemeral: true }),
      (e) => e instanceof ChannelError && e.reason === "unavailable",
    );
  });

  test("a received ephemeral message reaches the listeners but is not kept", async () => {
    const { socket, channel, ws } = await joined();
    /** @type {any[]} */
    const seen = [];
    channel.on("*", (m) => seen.push([m.subject, m.offset]));
    ws.receive({ ...message(TOPIC, null), subject: "typing", payload: {}, ephemeral: true });
    ws.receive(message(TOPIC, 1));
    ws.receive({ ...message(TOPIC, null), subject: "typing", payload: {}, ephemeral: true });
    assert.deepEqual(seen, [["typing", null], ["text", 1], ["typing", null]]);
    // A later handle on the page gets the kept messages as its history: no typing there.
    const { messages } = await socket.channel(TOPIC).join({ history: 10 });
    assert.deepEqual(
      messages.map((m) => m.offset),
      [1],
    );
  });
});

describe("edit, delete and mute", () => {
  test("edit sends an edit message referring to the offset", async () => {
    const { channel, ws } = await joined();
    const edit = channel.edit(3, "fixed");
    const frame = ws.lastSent(Event.MESSAGE);
    assert.deepEqual([frame.subject, frame.payload], ["edit", { offset: 3, text: "fixed" }]);
    ws.ok(frame, { offset: 4 });
    assert.deepEqual(await edit, { offset: 4 });
  });

  test("delete sends a delete message referring to the offset", async () => {
    const { channel, ws } = await joined();
    const deleted = channel.delete(3);
    const frame = ws.lastSent(Event.MESSAGE);
    assert.deepEqual([frame.subject, frame.payload], ["delete", { offset: 3 }]);
    ws.error(frame, "unauthorized", "only its author or a moderator may delete it");
    await assert.rejects(deleted, (e) => e instanceof ChannelError && e.reason === "unauthorized");
  });

  test("mute sends a mute message with the user and the seconds", async () => {
    const { channel, ws } = await joined();
    channel.mute("bob", 600);
    const frame = ws.lastSent(Event.MESSAGE);
    assert.deepEqual([frame.subject, frame.payload], ["mute", { user: "bob", seconds: 600 }]);
  });
});
