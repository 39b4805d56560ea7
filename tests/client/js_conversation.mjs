// js/client.js in Node, for the tests: ada, alan and grace (a moderator) on one topic
// push ephemeral, edit, delete and mute; prints each outcome as one JSON object per
// line, then exits.
//   node --experimental-websocket tests/client/js_conversation.mjs WS_URL TOPIC ADA ALAN GRACE
// (ADA, ALAN, GRACE: each user's token)

import { Socket } from "../../js/client.js";

const [url, topic, ...tokens] = process.argv.slice(2);
/** @param {Record<string, unknown>} what */
const print = (what) => console.log(JSON.stringify(what));

/**
 * The response of a request, or its error's reason.
 * @param {string} step
 * @param {Promise<Record<string, unknown>>} request
 */
async function outcome(step, request) {
  try {
    print({ step, ok: await request });
  } catch (error) {
    print({ step, error: /** @type {any} */ (error).reason });
  }
}

const [ada, alan, grace] = tokens.map((token) => new Socket(url, { token }).channel(topic));
/** @type {any[]} */
const seen = [];
alan.on("*", (message) => seen.push(message));
for (const channel of [ada, alan, grace]) await channel.join();

await outcome("typing", ada.push("typing", {}, { ephemeral: true }));
const { offset } = /** @type {{offset: number}} */ (await ada.push("text", { text: "helo" }));
await outcome("author edits", ada.edit(offset, "hello"));
await outcome("other edits", alan.edit(offset, "hijacked"));
await outcome("other deletes", alan.delete(offset));
await outcome("moderator deletes", grace.delete(offset));
await outcome("member mutes", ada.mute("alan", 3600));
await outcome("moderator mutes", grace.mute("alan", 3600));
await outcome("muted pushes", alan.push("text", { text: "hey" }));
await outcome("muted types", alan.push("typing", {}, { ephemeral: true }));
await outcome("moderator lifts", grace.mute("alan", 0));
await outcome("unmuted pushes", alan.push("text", { text: "thanks" }));

// alan's own last message arrives after the others it saw: wait for it, then report.
for (let i = 0; i < 200 && !seen.some((m) => m.payload?.text === "thanks"); i++) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
print({ seen: seen.map((m) => [m.subject, m.offset, m.ephemeral ?? false, m.from.user]) });
process.exit(0);
