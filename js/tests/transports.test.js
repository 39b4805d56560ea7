// The one client API over both transports: the page's own WebSocket, and the kernel
// relay over anywidget's custom messages. The same scenarios run on each.
// node --test js/tests/

import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { Socket } from "../client.js";
import { Event } from "../constants.js";
import { BUSY_AFTER_MS, firstConnection, kernelWebSocket } from "../transports.js";
import { FakeClock, FakeEnvironment, FakeWebSocket, message, settle } from "./fakes.js";

const TOPIC = "chat:lobby";

/** @typedef {Record<string, any>} Frame */

/**
 * The kernel side of the relay, played by the test: it sees the page's relay messages
 * and answers with frames, as the channels server behind the kernel would.
 */
class FakeKernel {
  constructor() {
    /** @type {Set<(message: any) => void>} */
    this.listeners = new Set();
    /** @type {any[]} every relay message of the page */
    this.received = [];
    /** Whether the kernel's main thread is busy: no acks until it frees up. */
    this.busy = false;
    /** @type {any[]} messages waiting while busy */
    this.queued = [];
    this._ids = 0;
  }

  /** @type {import("../transports.js").KernelLink["send"]} */
  send(message) {
    if (this.busy) this.queued.push(message);
    else this._handle(message);
  }

  /** @param {(message: any) => void} listener */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  newId = () => `link-${++this._ids}`;

  /** @param {any} message */
  _handle(message) {
    this.received.push(message);
    this.toPage({ kind: "relay", link: message.link, op: "ack", seq: message.seq });
  }

  /** The kernel's cell ended: it handles what waited, in order. */
  free() {
    this.busy = false;
    for (const message of this.queued.splice(0)) this._handle(message);
  }

  /** @param {any} message */
  toPage(message) {
    for (const listener of [...this.listeners]) listener(message);
  }

  /** The newest link the page opened. */
  get link() {
    const opened = this.received.filter((m) => m.op === "open").at(-1);
    if (!opened) throw new Error("no link was opened");
    return opened.link;
  }

  /** @returns {Frame[]} the frames the page sent on the current link */
  get sent() {
    return this.received
      .filter((m) => m.link === this.link && m.op === "frames")
      .flatMap((m) => m.texts.map((/** @type {string} */ t) => JSON.parse(t)));
  }
}

/**
 * The far side of one transport, as the tests drive it.
 * @typedef {object} Far
 * @property {() => Socket} makeSocket
 * @property {() => void} open the connection is up
 * @property {() => void} drop the connection is lost
 * @property {(frame: Frame) => void} receive a frame for the page
 * @property {() => Frame[]} sent what the page sent on the current connection
 */

/** @type {FakeClock} */
let clock;
/** @type {FakeEnvironment} */
let env;

/** @type {Record<string, () => Far>} */
const transports = {
  direct() {
    FakeWebSocket.reset();
    return {
      makeSocket: () =>
        new Socket("ws://127.0.0.1:8888/api/channels/websocket", {
          WebSocket: FakeWebSocket,
          clock,
          env,
          random: () => 0.5,
          heartbeatInterval: 0,
        }),
      open: () => FakeWebSocket.last.open(),
      drop: () => FakeWebSocket.last.drop(),
      receive: (frame) => FakeWebSocket.last.receive(frame),
      sent: () => FakeWebSocket.last.sent,
    };
  },
  kernel() {
    const kernel = new FakeKernel();
    return {
      makeSocket: () =>
        new Socket("kernel://relay/", {
          WebSocket: kernelWebSocket(kernel, { newId: kernel.newId }),
          clock,
          env,
          random: () => 0.5,
          heartbeatInterval: 0,
        }),
      open: () => kernel.toPage({ kind: "relay", link: kernel.link, op: "open" }),
      drop: () => kernel.toPage({ kind: "relay", link: kernel.link, op: "close", reason: "cut" }),
      receive: (frame) =>
        kernel.toPage({ kind: "relay", link: kernel.link, op: "frames", texts: [JSON.stringify(frame)] }),
      sent: () => kernel.sent,
    };
  },
};

/**
 * The last frame the page sent with `event`.
 * @param {Far} far
 * @param {string} event
 */
async function lastSent(far, event) {
  await settle();
  const frame = far.sent().filter((f) => f.event === event).at(-1);
  if (!frame) throw new Error(`no ${event} frame was sent`);
  return frame;
}

/**
 * @param {Far} far
 * @param {Frame} frame
 * @param {Frame} response
 */
function ok(far, frame, response) {
  far.receive({ event: "reply", topic: frame.topic, ref: frame.ref, payload: { status: "ok", response } });
}

beforeEach(() => {
  clock = new FakeClock();
  env = new FakeEnvironment();
});

for (const [name, make] of Object.entries(transports)) {
  describe(`the client over the ${name} transport`, () => {
    test("joins with history, shows who is here, receives and pushes", async () => {
      const far = make();
      const socket = far.makeSocket();
      far.open();
      assert.equal(socket.state, "connected");
      const channel = socket.channel(TOPIC);
      /** @type {string[]} */
      const seen = [];
      channel.on("text", (m) => seen.push(/** @type {any} */ (m.payload).text));
      const join = channel.join({ history: 50 });
      const joinFrame = await lastSent(far, Event.JOIN);
      assert.equal(joinFrame.history, 50);
      ok(far, joinFrame, { offset: 2, epoch: "e1", recovered: true, messages: [message(TOPIC, 1), message(TOPIC, 2)] });
      const { messages } = await join;
      assert.deepEqual(messages.map((m) => m.offset), [1, 2]);

      const meta = { id: "c1", kind: "browser", name: "Ada", phx_ref: "r1" };
      far.receive({ event: "presence_state", topic: TOPIC, payload: { ada: { metas: [meta] } } });
      assert.deepEqual(Object.keys(channel.members), ["ada"]);

      far.receive(message(TOPIC, 3, "live"));
      far.receive(message(TOPIC, 3, "live")); // the same offset again: shown once
      assert.deepEqual(seen, ["live"]);

      const push = channel.push("text", { text: "hi" });
      const pushFrame = await lastSent(far, Event.MESSAGE);
      assert.deepEqual(pushFrame.payload, { text: "hi" });
      ok(far, pushFrame, { offset: 4 });
      assert.deepEqual(await push, { offset: 4 });
    });

    test("after a cut it rejoins with since and shows each missed message once", async () => {
      const far = make();
      const socket = far.makeSocket();
      far.open();
      const channel = socket.channel(TOPIC);
      /** @type {number[]} */
      const seen = [];
      channel.on("*", (m) => seen.push(/** @type {number} */ (m.offset)));
      const join = channel.join({ history: 50 });
      ok(far, await lastSent(far, Event.JOIN), { offset: 0, epoch: "e1", recovered: true, messages: [] });
      await join;
      far.receive(message(TOPIC, 1));

      far.drop();
      assert.equal(socket.state, "reconnecting");
      const waiting = channel.push("text", { text: "while away" });
      clock.tick(1000);
      far.open();
      const rejoin = await lastSent(far, Event.JOIN);
      assert.equal(rejoin.since, 1);
      ok(far, rejoin, { offset: 3, epoch: "e1", recovered: true, messages: [message(TOPIC, 1), message(TOPIC, 2), message(TOPIC, 3)] });
      await settle();
      assert.deepEqual(seen, [1, 2, 3]);
      // The push that waited goes out after the rejoin, on the new connection.
      const pushFrame = await lastSent(far, Event.MESSAGE);
      ok(far, pushFrame, { offset: 4 });
      assert.deepEqual(await waiting, { offset: 4 });
      socket.close();
    });
  });
}

describe("the kernel transport", () => {
  test("says the kernel is busy while a message waits unacknowledged, and not once it is handled", async () => {
    {
      const kernel = new FakeKernel();
      /** @type {boolean[]} */
      const busy = [];
      const WebSocket = kernelWebSocket(kernel, {
        newId: kernel.newId,
        onBusy: (b) => busy.push(b),
        clock,
        now: () => clock.now,
      });
      const socket = new Socket("kernel://relay/", { WebSocket, clock, env, heartbeatInterval: 0 });
      kernel.toPage({ kind: "relay", link: kernel.link, op: "open" });
      const channel = socket.channel(TOPIC);
      const join = channel.join({ history: 50 });
      await settle();
      const joinFrame = kernel.sent.find((f) => f.event === Event.JOIN);
      kernel.toPage({
        kind: "relay",
        link: kernel.link,
        op: "frames",
        texts: [JSON.stringify({ event: "reply", topic: TOPIC, ref: joinFrame?.ref, payload: { status: "ok", response: { offset: 0, epoch: "e", messages: [] } } })],
      });
      await join;

      kernel.busy = true; // a cell runs
      const push = channel.push("text", { text: "typed while the kernel sleeps" });
      await settle();
      clock.tick(BUSY_AFTER_MS - 1);
      assert.deepEqual(busy, []);
      clock.tick(1);
      assert.deepEqual(busy, [true]);
      assert.equal(kernel.sent.filter((f) => f.event === Event.MESSAGE).length, 0);

      kernel.free(); // the cell ended: the message is handled, nothing was lost
      assert.deepEqual(busy, [true, false]);
      const pushFrame = kernel.sent.find((f) => f.event === Event.MESSAGE);
      assert.deepEqual(pushFrame?.payload, { text: "typed while the kernel sleeps" });
      kernel.toPage({
        kind: "relay",
        link: kernel.link,
        op: "frames",
        texts: [JSON.stringify({ event: "reply", topic: TOPIC, ref: pushFrame?.ref, payload: { status: "ok", response: { offset: 1 } } })],
      });
      assert.deepEqual(await push, { offset: 1 });
      socket.close();
    }
  });

  test("a link the kernel closes reports why, and the socket reconnects on a new link", async () => {
    const kernel = new FakeKernel();
    /** @type {string[]} */
    const errors = [];
    const WebSocket = kernelWebSocket(kernel, { newId: kernel.newId, onError: (e) => errors.push(e) });
    const socket = new Socket("kernel://relay/", { WebSocket, clock, env, random: () => 0.5, heartbeatInterval: 0 });
    const first = kernel.link;
    kernel.toPage({ kind: "relay", link: first, op: "close", reason: "ServerNotFound: no server" });
    assert.deepEqual(errors, ["ServerNotFound: no server"]);
    assert.equal(socket.state, "reconnecting");
    clock.tick(1000);
    assert.notEqual(kernel.link, first);
    kernel.toPage({ kind: "relay", link: kernel.link, op: "open" });
    assert.equal(socket.state, "connected");
    // Frames of the old link are not this link's.
    kernel.toPage({ kind: "relay", link: first, op: "open" });
    socket.close();
    assert.equal(kernel.received.at(-1).op, "close");
    assert.equal(kernel.received.at(-1).link, kernel.link);
  });

  test("closing flushes the frames of this task before the link's close", async () => {
    const kernel = new FakeKernel();
    const WebSocket = kernelWebSocket(kernel, { newId: kernel.newId });
    const ws = new WebSocket("kernel://relay/");
    kernel.toPage({ kind: "relay", link: kernel.link, op: "open" });
    ws.send(JSON.stringify({ event: "leave", topic: TOPIC, ref: "9" }));
    ws.close();
    assert.deepEqual(
      kernel.received.map((m) => m.op),
      ["open", "frames", "close"],
    );
  });
});

describe("firstConnection", () => {
  test("is true once the socket connects and false when its first attempt fails", async () => {
    FakeWebSocket.reset();
    const options = { WebSocket: FakeWebSocket, clock, env, random: () => 0.5, heartbeatInterval: 0 };
    const reached = new Socket("ws://127.0.0.1:1/api/channels/websocket", options);
    const first = firstConnection(reached, 10_000);
    FakeWebSocket.last.open();
    assert.equal(await first, true);
    assert.equal(await firstConnection(reached, 10_000), true); // already connected

    const refused = new Socket("ws://127.0.0.1:2/api/channels/websocket", options);
    const second = firstConnection(refused, 10_000);
    FakeWebSocket.last.drop(); // a 404, a refused origin, a blocked webview
    assert.equal(await second, false);
    assert.equal(refused.state, "reconnecting");
    reached.close();
    refused.close();
  });
});
