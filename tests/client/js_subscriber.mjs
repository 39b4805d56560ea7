// js/client.js in Node, for the tests: joins one topic and prints what happens, one
// JSON object per line, until it is killed.
//   node --experimental-websocket tests/client/js_subscriber.mjs WS_URL TOKEN TOPIC

import { Socket } from "../../js/client.js";

const [url, token, topic] = process.argv.slice(2);
/** @param {Record<string, unknown>} what */
const print = (what) => console.log(JSON.stringify(what));

const socket = new Socket(url, { token, maxBackoff: 500 });
socket.onState((state) => print({ socket: state }));
const channel = socket.channel(topic);
channel.on("*", (message) => print({ message: message.offset }));
channel.onJoin(({ rejoin, recovered }) => print({ state: channel.state, rejoin, recovered }));
channel.onRetry(({ reason }) => print({ state: channel.state, reason }));
channel.onClose((reason) => print({ state: channel.state, reason }));
await channel.join();
