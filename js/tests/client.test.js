// The client's logic against a fake WebSocket and a fake clock:
// node --test js/tests/

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { ChannelError, Socket, applyDiff, getSocket } from "../client.js";
import { ErrorCode, Event, MAX_BACKOFF_MS } from "../constants.js";
import { FakeClock, FakeEnvironment, FakeWebSocket, message, settle } from "./fakes.js";

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

/** @param {import("../client.js").SocketOptions} [options] */
function makeSocket(options = {}) {
  return new Socket(URL, {
    WebSocket: FakeWebSocket,
    clock,
    env,
    random: () => 0.5,
    heartbeatInterval: 0,
    ...options,
  });
}

/**
 * A socket with `topic` joined at `offset` (the join answered with `messages`).
 * @param {{offset?: number, messages?: any[], options?: import("../client.js").SocketOptions}} [setup]
 */
async function joined({ offset = 0, messages = [], options = {} } = {}) {
  const socket = makeSocket(options);
  FakeWebSocket.last.open();
  const channel = socket.channel(TOPIC);
  const join = channel.join({ history: 50 });
  const ws = FakeWebSocket.last;
  ws.ok(ws.lastSent(Event.JOIN), { offset, epoch: "e1", recovered: true, messages });
  const response = await join;
  return { socket, channel, ws, response };
}

/**
 * Assert that `promise` rejects with a ChannelError of `reason`.
 * @param {Promise<unknown>} promise
 * @param {string} reason
 */
function rejectsWith(promise, reason) {
  return assert.rejects(promise, (e) => e instanceof ChannelError && e.reason === reason);
}

/** Advance the clock until the socket makes its next WebSocket; return it. */
function nextWebSocket() {
  const made = FakeWebSocket.made.length;
  for (let i = 0; i < MAX_BACKOFF_MS && FakeWebSocket.made.length === made; i++) clock.tick(1);
  assert.equal(FakeWebSocket.made.length, made + 1, "no reconnect attempt");
  return FakeWebSocket.last;
}

/** @param {import("../client.js").Channel} channel */
function record(channel) {
  /** @type {any[]} */
  const seen = [];
  channel.on("*", (m) => seen.push(m.offset));
  return seen;
}

describe("joining", () => {
  test("join sends history and resolves with the reply's messages", async () => {
    const { ws, response, channel } = await joined({
      offset: 2,
      messages: [message(TOPIC, 1), message(TOPIC, 2)],
    });
    const frame = ws.lastSent(Event.JOIN);
    assert.equal(frame.topic, TOPIC);
    assert.equal(frame.history, 50);
    assert.equal(frame.since, undefined);
    assert.deepEqual(
      response.messages.map((m) => m.offset),
      [1, 2],
    );
    assert.equal(channel.lastOffset, 2);
    assert.ok(channel.joined);
  });

  test("a join made before the socket opens is sent when it opens", async () => {
    const socket = makeSocket();
    const join = socket.channel(TOPIC, { invite: "ok" }).join();
    const ws = FakeWebSocket.last;
    assert.equal(ws.sent.length, 0);
    ws.open();
    const frame = ws.lastSent(Event.JOIN);
    assert.deepEqual(frame.payload, { invite: "ok" });
    ws.ok(frame, { offset: 0, epoch: "e1", recovered: true, messages: [] });
    assert.deepEqual((await join).messages, []);
  });

  test("a refused join rejects with join_rejected and is not retried after a reconnect", async () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    const channel = socket.channel("invite:vip");
    /** @type {string[]} */
    const closed = [];
    channel.onClose((reason) => closed.push(reason));
    const join = channel.join();
    const ws = FakeWebSocket.last;
    ws.error(ws.lastSent(Event.JOIN), ErrorCode.JOIN_REJECTED, "invite required");
    await rejectsWith(join, "join_rejected");
    assert.deepEqual(closed, ["invite required"]);
    ws.drop();
    nextWebSocket().open();
    assert.equal(FakeWebSocket.last.sentFrames(Event.JOIN).length, 0);
  });

  test("a join reply with can_send false makes the topic read-only for every handle", async () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    const channel = socket.channel("announce:class");
    const join = channel.join();
    const ws = FakeWebSocket.last;
    ws.ok(ws.lastSent(Event.JOIN), { offset: 0, epoch: "e1", recovered: true, can_send: false, messages: [] });
    assert.equal((await join).can_send, false);
    assert.equal(channel.canSend, false);
    const other = socket.channel("announce:class");
    assert.equal((await other.join()).can_send, false);
    assert.equal(other.canSend, false);
  });

  test("a join reply without can_send lets the user send", async () => {
    const { channel, response } = await joined();
    assert.equal(response.can_send, true);
    assert.equal(channel.canSend, true);
  });

  test("a join refused as unauthorized rejects with the server's detail", async () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    const join = socket.channel("user:ada:inbox").join();
    const ws = FakeWebSocket.last;
    const detail = "not allowed to join 'user:ada:inbox' (rule 3: topic 'user:{user}:*', join '{user}')";
    ws.error(ws.lastSent(Event.JOIN), ErrorCode.UNAUTHORIZED, detail);
    await assert.rejects(join, (e) => e instanceof ChannelError && e.reason === "unauthorized" && e.detail === detail);
  });

  test("a join without a reply rejects with timeout after 10 s", async () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    const join = socket.channel(TOPIC).join();
    clock.tick(9_999);
    await settle();
    clock.tick(1);
    await rejectsWith(join, "timeout");
  });

  test("two handles of one topic share one subscription; the last leave leaves", async () => {
    const { socket, channel, ws } = await joined({
      offset: 3,
      messages: [message(TOPIC, 1), message(TOPIC, 2), message(TOPIC, 3)],
    });
    const other = socket.channel(TOPIC);
    const response = await other.join({ history: 2 });
    assert.deepEqual(
      response.messages.map((m) => m.offset),
      [2, 3],
    );
    assert.equal(ws.sentFrames(Event.JOIN).length, 1);
    const seen = record(other);
    ws.receive(message(TOPIC, 4));
    assert.deepEqual(seen, [4]);
    await channel.leave();
    assert.equal(ws.sentFrames(Event.LEAVE).length, 0);
    const leaving = other.leave();
    ws.ok(ws.lastSent(Event.LEAVE));
    await leaving;
    assert.equal(ws.sentFrames(Event.LEAVE).length, 1);
    assert.ok(socket.idle);
  });

  test("the token goes into the URL", () => {
    makeSocket({ token: "s3cret" });
    assert.equal(FakeWebSocket.last.url, `${URL}?token=s3cret`);
  });

  test("getSocket gives the page one socket per endpoint", () => {
    const options = { WebSocket: FakeWebSocket, clock, env };
    const a = getSocket("ws://a.test/api/channels/websocket", options);
    assert.equal(getSocket("ws://a.test/api/channels/websocket", options), a);
    assert.notEqual(getSocket("ws://b.test/api/channels/websocket", options), a);
    assert.equal(FakeWebSocket.made.length, 2);
  });
});

describe("receiving", () => {
  test("listeners get messages by subject, and '*' gets every one", async () => {
    const { channel, ws } = await joined();
    /** @type {string[]} */
    const texts = [];
    const all = record(channel);
    channel.on("text", (m) => texts.push(/** @type {any} */ (m.payload).text));
    ws.receive(message(TOPIC, 1, "hi"));
    ws.receive({ ...message(TOPIC, 2), subject: "cell" });
    assert.deepEqual(texts, ["hi"]);
    assert.deepEqual(all, [1, 2]);
  });

  test("a message whose offset was seen is dropped", async () => {
    const { channel, ws } = await joined({ offset: 2, messages: [message(TOPIC, 2)] });
    const seen = record(channel);
    ws.receive(message(TOPIC, 2));
    ws.receive(message(TOPIC, 3));
    ws.receive(message(TOPIC, 3));
    ws.receive(message(TOPIC, null, "a push"));
    assert.deepEqual(seen, [3, null]);
    assert.equal(channel.lastOffset, 3);
  });

  test("the ping text frame and garbage are ignored", async () => {
    const { channel, ws } = await joined();
    const seen = record(channel);
    ws.receive("ping");
    ws.receive("{not json");
    ws.receive(message(TOPIC, 1));
    assert.deepEqual(seen, [1]);
  });

  test("presence follows presence_state and presence_diff", async () => {
    const { channel, ws } = await joined();
    const meta = (/** @type {string} */ id) => ({ id, phx_ref: id, name: id, kind: "browser" });
    /** @type {number[]} */
    const counts = [];
    channel.onPresence((members) => counts.push(Object.keys(members).length));
    ws.receive({
      event: "presence_state",
      topic: TOPIC,
      payload: { ada: { metas: [meta("a1")] } },
    });
    ws.receive({
      event: "presence_diff",
      topic: TOPIC,
      payload: { joins: { grace: { metas: [meta("g1")] } }, leaves: {} },
    });
    ws.receive({
      event: "presence_diff",
      topic: TOPIC,
      payload: { joins: {}, leaves: { ada: { metas: [meta("a1")] } } },
    });
    assert.deepEqual(Object.keys(channel.members), ["grace"]);
    assert.deepEqual(counts, [1, 2, 1]);
  });

  test("applyDiff keeps a user while one of their connections stays", () => {
    const m = (/** @type {string} */ id) => /** @type {any} */ ({ id, phx_ref: id });
    const members = applyDiff({ ada: [m("a1"), m("a2")] }, { leaves: { ada: { metas: [m("a1")] } } });
    assert.deepEqual(members, { ada: [m("a2")] });
  });

  test("a close frame ends the subscription", async () => {
    const { channel, ws } = await joined();
    /** @type {string[]} */
    const reasons = [];
    channel.onClose((r) => reasons.push(r));
    ws.receive({ event: "close", topic: TOPIC, payload: { reason: "kicked" } });
    assert.deepEqual(reasons, ["kicked"]);
    await rejectsWith(channel.push("text", {}), "not_joined");
  });
});

describe("pushing", () => {
  test("push resolves with the ok reply's response", async () => {
    const { channel, ws } = await joined();
    const push = channel.push("text", { text: "hi" });
    const frame = ws.lastSent(Event.MESSAGE);
    assert.deepEqual(
      { topic: frame.topic, subject: frame.subject, payload: frame.payload },
      { topic: TOPIC, subject: "text", payload: { text: "hi" } },
    );
    ws.ok(frame, { offset: 7 });
    assert.deepEqual(await push, { offset: 7 });
  });

  test("push rejects on an error reply", async () => {
    const { channel, ws } = await joined();
    const push = channel.push("text", { text: "x".repeat(10) });
    ws.error(ws.lastSent(Event.MESSAGE), ErrorCode.TOO_LARGE, "too big");
    await rejectsWith(push, "too_large");
  });

  test("push rejects with timeout after 10 s without a reply", async () => {
    const { channel } = await joined();
    let outcome = "pending";
    const push = channel.push("text", {}).catch((e) => {
      outcome = e.reason;
    });
    clock.tick(9_999);
    await settle();
    assert.equal(outcome, "pending");
    clock.tick(1);
    await push;
    assert.equal(outcome, "timeout");
  });

  test("a push in flight when the connection drops rejects with unavailable", async () => {
    const { channel, ws } = await joined();
    const push = channel.push("text", {});
    ws.drop();
    await rejectsWith(push, "unavailable");
  });

  test("pushes made while disconnected are sent after the rejoin, in order", async () => {
    const { channel, ws } = await joined();
    ws.drop();
    const first = channel.push("text", { text: "one" });
    const second = channel.push("text", { text: "two" });
    const next = nextWebSocket();
    next.open();
    assert.deepEqual(
      next.sent.map((f) => f.event),
      ["join", "message", "message"],
    );
    const [one, two] = next.sentFrames(Event.MESSAGE);
    assert.deepEqual([one.payload.text, two.payload.text], ["one", "two"]);
    next.ok(one, { offset: 1 });
    next.ok(two, { offset: 2 });
    assert.deepEqual([await first, await second], [{ offset: 1 }, { offset: 2 }]);
  });

  test("a buffered push that times out is rejected and never sent", async () => {
    const { channel, ws } = await joined();
    ws.drop();
    env.fire("offline");
    const push = channel.push("text", { text: "late" }, { timeout: 1_000 });
    clock.tick(1_000);
    await rejectsWith(push, "timeout");
    env.fire("online");
    FakeWebSocket.last.open();
    assert.equal(FakeWebSocket.last.sentFrames(Event.MESSAGE).length, 0);
  });

  test("the buffer is bounded: past it, push rejects at once", async () => {
    const { channel, ws } = await joined({ options: { maxBuffered: 2 } });
    ws.drop();
    channel.push("text", {}).catch(() => {});
    channel.push("text", {}).catch(() => {});
    await rejectsWith(channel.push("text", {}), "unavailable");
  });
});

describe("reconnecting", () => {
  test("state goes connecting, connected, reconnecting, connected", async () => {
    const socket = makeSocket();
    /** @type {string[]} */
    const states = [socket.state];
    socket.onState((s) => states.push(s));
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop();
    nextWebSocket().open();
    assert.deepEqual(states, ["connecting", "connected", "reconnecting", "connected"]);
  });

  test("the backoff doubles with jitter, is capped, and resets after a connection", () => {
    const socket = makeSocket({ random: () => 0 });
    /** @type {number[]} */
    const delays = [];
    for (let i = 0; i < 9; i++) {
      const before = clock.now;
      const made = FakeWebSocket.made.length;
      FakeWebSocket.last.drop();
      while (FakeWebSocket.made.length === made) clock.tick(1);
      delays.push(clock.now - before);
    }
    // random() = 0: half of 250 ms * 2^n, capped at half of MAX_BACKOFF_MS
    assert.deepEqual(delays, [125, 250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    FakeWebSocket.last.open();
    const before = clock.now;
    FakeWebSocket.last.drop();
    while (FakeWebSocket.last.readyState !== 0) clock.tick(1);
    assert.equal(clock.now - before, 125);
    assert.equal(socket.state, "reconnecting");
  });

  test("the jitter spreads the delay between half and all of it", () => {
    makeSocket({ random: () => 0.99 });
    const made = FakeWebSocket.made.length;
    FakeWebSocket.last.drop();
    clock.tick(240);
    assert.equal(FakeWebSocket.made.length, made);
    clock.tick(10);
    assert.equal(FakeWebSocket.made.length, made + 1);
  });

  test("rejoins with since = the last offset, and delivers the missed messages once, in order", async () => {
    const { channel, ws } = await joined({ offset: 2, messages: [message(TOPIC, 2)] });
    const seen = record(channel);
    ws.receive(message(TOPIC, 3));
    ws.drop();
    assert.equal(channel.joined, false);
    const next = nextWebSocket();
    next.open();
    const rejoin = next.lastSent(Event.JOIN);
    assert.equal(rejoin.since, 3);
    assert.equal(rejoin.history, undefined);
    next.ok(rejoin, {
      offset: 8,
      epoch: "e1",
      recovered: true,
      messages: [4, 5, 6, 7, 8].map((o) => message(TOPIC, o)),
    });
    // a live message the rejoin reply already held arrives again: dropped
    next.receive(message(TOPIC, 8));
    next.receive(message(TOPIC, 9));
    assert.deepEqual(seen, [3, 4, 5, 6, 7, 8, 9]);
    assert.ok(channel.joined);
  });

  test("a join with history 0 rejoins from the offset the topic had", async () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    const join = socket.channel(TOPIC).join();
    const ws = FakeWebSocket.last;
    ws.ok(ws.lastSent(Event.JOIN), { offset: 40, epoch: "e1", recovered: true, messages: [] });
    await join;
    ws.drop();
    nextWebSocket().open();
    assert.equal(FakeWebSocket.last.lastSent(Event.JOIN).since, 40);
  });

  test("a new history epoch resets the offsets and tells the listeners", async () => {
    const { channel, ws } = await joined({ offset: 5, messages: [message(TOPIC, 5)] });
    const seen = record(channel);
    /** @type {any[]} */
    const joins = [];
    channel.onJoin((info) => joins.push(info));
    ws.drop();
    const next = nextWebSocket();
    next.open();
    next.ok(next.lastSent(Event.JOIN), {
      offset: 1,
      epoch: "e2",
      recovered: false,
      messages: [message(TOPIC, 1)],
    });
    assert.deepEqual(joins, [{ rejoin: true, reset: true, recovered: false }]);
    assert.deepEqual(seen, [1]);
    assert.equal(channel.lastOffset, 1);
  });

  test("coming back online reconnects at once, without waiting for the backoff", () => {
    const socket = makeSocket();
    FakeWebSocket.last.open();
    env.fire("offline");
    FakeWebSocket.last.drop();
    assert.equal(socket.state, "offline");
    const made = FakeWebSocket.made.length;
    env.fire("online");
    assert.equal(FakeWebSocket.made.length, made + 1);
    FakeWebSocket.last.open();
    assert.equal(socket.state, "connected");
  });

  test("the page becoming visible reconnects at once", () => {
    makeSocket();
    FakeWebSocket.last.drop();
    const made = FakeWebSocket.made.length;
    env.fire("visible");
    assert.equal(FakeWebSocket.made.length, made + 1);
  });

  test("a heartbeat goes out every interval; one without a reply drops the connection", async () => {
    const socket = makeSocket({ heartbeatInterval: 30_000 });
    const ws = FakeWebSocket.last;
    ws.open();
    clock.tick(30_000);
    const beat = ws.lastSent(Event.HEARTBEAT);
    ws.ok(beat);
    clock.tick(30_000);
    assert.equal(ws.sentFrames(Event.HEARTBEAT).length, 2);
    clock.tick(10_000); // the second one gets no reply
    await settle();
    assert.equal(socket.state, "reconnecting");
    assert.ok(ws.closedByClient);
  });

  test("close() stops for good and fails what is waiting", async () => {
    const { socket, channel, ws } = await joined();
    ws.drop();
    const push = channel.push("text", {});
    socket.close();
    await rejectsWith(push, "unavailable");
    const made = FakeWebSocket.made.length;
    clock.tick(60_000);
    env.fire("online");
    assert.equal(FakeWebSocket.made.length, made);
    assert.equal(socket.state, "closed");
  });
});
