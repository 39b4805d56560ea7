// The unmodified `phoenix` npm client, driven by tests/test_phoenix.py over stdin/stdout.
//
// Each stdin line is a JSON command; each stdout line a JSON event:
//   {"cmd": "connect", "url", "token"}                -> "open", then "close"/"open" as they happen
//   {"cmd": "join", "id", "topic", "params", "on": [names]}
//        -> {"id", "event": "join", "status", "response"} on every (re)join's reply,
//           {"event": "on", "topic", "name", "payload"} for each bound event,
//           {"event": "sync", "topic", "members": {key: [meta, ...]}} on Presence.onSync
//   {"cmd": "push", "id", "topic", "name", "payload"} -> {"id", "event": "push", "status", "response"}
//   {"cmd": "leave", "id", "topic"}                   -> {"id", "event": "leave", "status"}
//   {"cmd": "ping", "id"}                             -> {"id", "event": "pong"}
//   {"cmd": "exit"}
// Every frame received on topic "phoenix" is reported as {"event": "socket_frame", "frame"}.

import { createInterface } from "node:readline";
import { Presence, Socket } from "phoenix";
import WebSocket from "ws";

let socket = null;
const channels = new Map();

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function connect({ url, token }) {
  socket = new Socket(url, {
    transport: WebSocket,
    params: { token },
    reconnectAfterMs: () => 200,
    rejoinAfterMs: () => 200,
  });
  socket.onOpen(() => emit({ event: "open" }));
  socket.onClose((e) => emit({ event: "close", code: e && e.code }));
  socket.onMessage((msg) => {
    if (msg.topic === "phoenix") emit({ event: "socket_frame", frame: msg });
  });
  socket.connect();
}

function join({ id, topic, params, on }) {
  const channel = socket.channel(topic, params || {});
  channels.set(topic, channel);
  for (const name of on || []) {
    channel.on(name, (payload) => emit({ event: "on", topic, name, payload }));
  }
  const presence = new Presence(channel);
  presence.onSync(() => {
    const members = {};
    presence.list((key, { metas }) => {
      members[key] = metas;
    });
    emit({ event: "sync", topic, members });
  });
  channel
    .join()
    .receive("ok", (response) => emit({ id, event: "join", status: "ok", response }))
    .receive("error", (response) => emit({ id, event: "join", status: "error", response }))
    .receive("timeout", () => emit({ id, event: "join", status: "timeout" }));
}

function push({ id, topic, name, payload }) {
  channels
    .get(topic)
    .push(name, payload)
    .receive("ok", (response) => emit({ id, event: "push", status: "ok", response }))
    .receive("error", (response) => emit({ id, event: "push", status: "error", response }))
    .receive("timeout", () => emit({ id, event: "push", status: "timeout" }));
}

function leave({ id, topic }) {
  channels
    .get(topic)
    .leave()
    .receive("ok", () => emit({ id, event: "leave", status: "ok" }))
    .receive("timeout", () => emit({ id, event: "leave", status: "timeout" }));
}

const commands = {
  connect,
  join,
  push,
  leave,
  ping: ({ id }) => socket.ping(() => emit({ id, event: "pong" })),
  exit: () => {
    socket.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000);
  },
};

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  try {
    commands[command.cmd](command);
  } catch (error) {
    emit({ event: "driver_error", command, error: String(error) });
  }
});
process.stdin.on("end", () => process.exit(0));
