// Rejoins that fail, big join replies, and joins that get the connection closed, against
// a fake WebSocket and a fake clock: node --test js/tests/

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { MAX_JOIN_CLOSES, Socket } from "../client.js";
import { CloseCode, ErrorCode, Event, MAX_BACKOFF_MS } from "../constants.js";
import { FakeClock, FakeEnvironment, FakeWebSocket, message, settle } from "./fakes.js";

const URL = "ws://127.0.0.1:8888/api/channels/websocket";
const TOPIC = "chat:lobby";

/** @type {FakeClock} */
let clock;

beforeEach(() => {
  FakeWebSocket.reset();
  clock = new FakeClock();
});

function makeSocket() {
  return new Socket(URL, {
    WebSocket: FakeWebSocket,
    clock,
    env: new FakeEnvironment(),
    random: () => 0,
    heartbeatInterval: 0,
  });
}

/**
 * A socket with `topics` joined (offset 3 each), each with a record of what it received.
 * @param {string[]} topics
 */
async function joined(topics = [TOPIC]) {
  const socket = makeSocket();
  const ws = FakeWebSocket.last;
  ws.open();
  const channels = topics.map((topic) => socket.channel(topic));
  /** @type {Record<string, (number | null)[]>} */
  const seen = {};
  for (const channel of channels) {
    const join = channel.join();
    ws.ok(ws.lastSent(Event.JOIN, { topic: channel.topic }), { offset: 3, epoch: "e1", messages: [] });
    await join;
    seen[channel.topic] = [];
    channel.on("*", (m) => seen[channel.topic].push(m.offset));
  }
  return { socket, channels, ws, seen };
}

/** Advance the clock until the socket makes its next WebSocket; return it, open. */
function reconnect() {
  const made = FakeWebSocket.made.length;
  for (let i = 0; i < MAX_BACKOFF_MS && FakeWebSocket.made.length === made; i++) clock.tick(1);
  assert.equal(FakeWebSocket.made.length, made + 1, "no reconnect attempt");
  FakeWebSocket.last.open();
  return FakeWebSocket.last;
}

/**
 * Advance the clock until `ws` sends one more join of `topic`; return it.
 * @param {FakeWebSocket} ws
 * @param {string} topic
 */
function nextJoin(ws, topic = TOPIC) {
  const sent = ws.sentFrames(Event.JOIN, { topic }).length;
  const start = clock.now;
  while (ws.sentFrames(Event.JOIN, { topic }).length === sent) {
    clock.tick(1);
    assert.ok(clock.now - start < 60_000, "no join was sent again");
  }
  return { frame: ws.lastSent(Event.JOIN, { topic }), waited: clock.now - start };
}

/** @param {FakeWebSocket} ws */
function dropSlow(ws) {
  ws.readyState = 3;
  ws.onclose?.({ code: CloseCode.SLOW_CONSUMER });
}

describe("a rejoin that the server cannot answer now", () => {
  test("is retried with backoff, keeping since, while the channel says retrying", async () => {
    const { channels, ws, seen } = await joined();
    const [channel] = channels;
    /** @type {any[]} */
    const retries = [];
    channel.onRetry((info) => retries.push(info));
    ws.drop();
    const next = reconnect();
    assert.equal(channel.state, "rejoining");
    next.error(next.lastSent(Event.JOIN), ErrorCode.UNAVAILABLE, "Redis is unavailable");
    assert.equal(channel.state, "retrying");
    assert.equal(channel.joined, false);

    const second = nextJoin(next);
    assert.equal(second.frame.since, 3);
    next.error(second.frame, ErrorCode.UNAVAILABLE, "Redis is unavailable");
    const third = nextJoin(next);
    // random() = 0: half of 250 ms, then half of 500 ms
    assert.deepEqual([second.waited, third.waited], [125, 250]);
    assert.deepEqual(
      retries.map((r) => [r.reason, r.delay]),
      [
        ["unavailable", 125],
        ["unavailable", 250],
      ],
    );
    next.ok(third.frame, { offset: 4, epoch: "e1", recovered: true, messages: [message(TOPIC, 4)] });
    assert.equal(channel.state, "joined");
    assert.ok(channel.joined);
    next.receive(message(TOPIC, 5));
    assert.deepEqual(seen[TOPIC], [4, 5]);
  });

  test("waits the retry_after the server asked for", async () => {
    const { ws } = await joined();
    ws.drop();
    const next = reconnect();
    next.receive({
      event: "reply",
      topic: TOPIC,
      ref: next.lastSent(Event.JOIN).ref,
      payload: { status: "error", response: { reason: "unavailable", detail: "", retry_after: 3000 } },
    });
    assert.equal(nextJoin(next).waited, 3000);
  });

  test("is retried when no reply comes within the timeout", async () => {
    const { channels, ws } = await joined();
    ws.drop();
    const next = reconnect();
    const first = next.lastSent(Event.JOIN);
    clock.tick(10_000);
    assert.equal(channels[0].state, "retrying");
    const again = nextJoin(next).frame;
    assert.notEqual(again.ref, first.ref);
    next.ok(first, { offset: 3, epoch: "e1", recovered: true, messages: [] }); // too late: ignored
    assert.equal(channels[0].state, "rejoining");
    next.ok(again, { offset: 3, epoch: "e1", recovered: true, messages: [] });
    assert.equal(channels[0].state, "joined");
  });

  test("refused for good (join_rejected) ends the channel and is not retried", async () => {
    const { channels, ws } = await joined();
    /** @type {string[]} */
    const closed = [];
    channels[0].onClose((reason) => closed.push(reason));
    ws.drop();
    const next = reconnect();
    next.error(next.lastSent(Event.JOIN), ErrorCode.JOIN_REJECTED, "invite required");
    assert.deepEqual(closed, ["invite required"]);
    assert.equal(channels[0].state, "closed");
    clock.tick(60_000);
    assert.equal(next.sentFrames(Event.JOIN).length, 1);
  });

  test("stops retrying when the connection drops; the next one rejoins it", async () => {
    const { ws } = await joined();
    ws.drop();
    const next = reconnect();
    next.error(next.lastSent(Event.JOIN), ErrorCode.UNAVAILABLE, "down");
    next.drop();
    const third = reconnect();
    clock.tick(1_000);
    assert.equal(next.sentFrames(Event.JOIN).length, 1);
    assert.equal(third.sentFrames(Event.JOIN).length, 1);
  });
});

describe("a truncated join reply", () => {
  test("is completed with history pages before the join resolves", async () => {
    const socket = makeSocket();
    const ws = FakeWebSocket.last;
    ws.open();
    const join = socket.channel(TOPIC).join({ history: 50 });
    ws.ok(ws.lastSent(Event.JOIN), {
      offset: 5,
      epoch: "e1",
      recovered: true,
      truncated: true,
      messages: [message(TOPIC, 5)],
    });
    await settle();
    const page = ws.lastSent(Event.HISTORY);
    assert.deepEqual(page.payload, { before: 5, limit: 49 });
    ws.ok(page, { truncated: true, messages: [message(TOPIC, 3), message(TOPIC, 4)] });
    await settle();
    const older = ws.lastSent(Event.HISTORY);
    assert.deepEqual(older.payload, { before: 3, limit: 47 });
    ws.ok(older, { messages: [message(TOPIC, 1), message(TOPIC, 2)] });
    const response = await join;
    assert.deepEqual(
      response.messages.map((m) => m.offset),
      [1, 2, 3, 4, 5],
    );
    assert.equal(ws.sentFrames(Event.HISTORY).length, 2);
  });

  test("after a rejoin is completed by joining again from the last one received", async () => {
    const { channels, ws, seen } = await joined();
    ws.drop();
    const next = reconnect();
    const rejoin = next.lastSent(Event.JOIN);
    assert.equal(rejoin.since, 3);
    next.ok(rejoin, {
      offset: 9,
      epoch: "e1",
      recovered: true,
      truncated: true,
      messages: [message(TOPIC, 4), message(TOPIC, 5)],
    });
    // Live messages after the reply wait until the missed ones are delivered.
    next.receive(message(TOPIC, 10));
    await settle();
    const more = next.lastSent(Event.JOIN);
    assert.notEqual(more.ref, rejoin.ref);
    assert.equal(more.since, 5);
    assert.deepEqual(seen[TOPIC], []);
    next.ok(more, {
      offset: 10,
      epoch: "e1",
      recovered: true,
      messages: [6, 7, 8, 9, 10].map((o) => message(TOPIC, o)),
    });
    await settle();
    assert.deepEqual(seen[TOPIC], [4, 5, 6, 7, 8, 9, 10]);
    assert.ok(channels[0].recovered);
    next.receive(message(TOPIC, 11));
    assert.deepEqual(seen[TOPIC].at(-1), 11);
  });

  test("whose next page does not meet it says recovered false", async () => {
    const { channels, ws, seen } = await joined();
    ws.drop();
    const next = reconnect();
    next.ok(next.lastSent(Event.JOIN), {
      offset: 9,
      epoch: "e1",
      recovered: true,
      truncated: true,
      messages: [message(TOPIC, 4)],
    });
    await settle();
    next.ok(next.lastSent(Event.JOIN), {
      offset: 9,
      epoch: "e1",
      recovered: true,
      messages: [message(TOPIC, 8), message(TOPIC, 9)],
    });
    await settle();
    assert.equal(channels[0].recovered, false);
    assert.deepEqual(seen[TOPIC], [4]);
  });
});

describe("joins that get the connection closed as a slow consumer", () => {
  test("back off, are retried one at a time, and the culprit alone is given up", async () => {
    const { socket, channels, ws } = await joined(["big:poison", "chat:calm"]);
    const [poison, calm] = channels;
    /** @type {string[]} */
    const closed = [];
    poison.onClose((reason) => closed.push(reason));
    ws.drop();

    /** @type {number[]} */
    const waits = [];
    const reconnectTimed = () => {
      const start = clock.now;
      const next = reconnect();
      waits.push(clock.now - start);
      return next;
    };
    // Both joins go out at once; the first reply is too big: both were waiting.
    let next = reconnectTimed();
    assert.equal(next.sentFrames(Event.JOIN).length, 2);
    dropSlow(next);
    // Now they go one at a time, the poisoned one (first joined) first: it alone waits.
    next = reconnectTimed();
    assert.deepEqual(
      next.sentFrames(Event.JOIN).map((f) => f.topic),
      ["big:poison"],
    );
    dropSlow(next);
    // The calm one, closed fewer times alone, goes first; the poisoned one after it.
    next = reconnectTimed();
    assert.deepEqual(
      next.sentFrames(Event.JOIN).map((f) => f.topic),
      ["chat:calm"],
    );
    next.ok(next.lastSent(Event.JOIN), { offset: 3, epoch: "e1", recovered: true, messages: [] });
    assert.deepEqual(
      next.sentFrames(Event.JOIN).map((f) => f.topic),
      ["chat:calm", "big:poison"],
    );
    dropSlow(next);
    assert.equal(MAX_JOIN_CLOSES, 2);
    assert.equal(poison.state, "closed");
    assert.match(closed[0], /slow consumer/);

    next = reconnectTimed();
    assert.deepEqual(
      next.sentFrames(Event.JOIN).map((f) => f.topic),
      ["chat:calm"],
    );
    next.ok(next.lastSent(Event.JOIN), { offset: 3, epoch: "e1", recovered: true, messages: [] });
    assert.ok(calm.joined);
    // random() = 0: half of 250 ms doubling: the closes never reset the backoff.
    assert.deepEqual(waits, [125, 250, 500, 1000]);
    // A healthy connection does: the next drop waits the first delay again.
    next.drop();
    reconnectTimed();
    assert.equal(waits.at(-1), 125);
    assert.equal(socket.state, "connected");
  });
});

test("a connection refused with an error event and no close event (Node) is retried", () => {
  const socket = makeSocket();
  const ws = FakeWebSocket.last;
  ws.readyState = 3;
  ws.onerror?.({});
  assert.equal(socket.state, "reconnecting");
  reconnect();
  assert.equal(socket.state, "connected");
});
