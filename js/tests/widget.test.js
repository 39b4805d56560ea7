// The widget's pure parts: where the page's endpoint is, which images are shown.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ChannelError } from "../client.js";
import { kernelEndpoint, pageEndpoint, pngData, refusalLine, serverAnswer } from "../widget.js";

/**
 * A document holding `#jupyter-config-data` with `config` (or none).
 * @param {string} baseURI
 * @param {unknown} [config] an object, or a string taken as the element's text
 * @returns {Document}
 */
function page(baseURI, config) {
  const text = typeof config === "string" ? config : JSON.stringify(config);
  const element = config === undefined ? null : { textContent: text };
  return /** @type {any} */ ({ baseURI, getElementById: () => element });
}

describe("pageEndpoint", () => {
  test("builds the endpoint from baseUrl and the page's scheme", () => {
    const doc = page("https://hub.example/user/ada/lab", { baseUrl: "/user/ada/", token: "t" });
    assert.deepEqual(pageEndpoint(doc), {
      url: "wss://hub.example/user/ada/api/channels/websocket",
      token: "t",
    });
  });

  test("uses wsUrl when the page sets one", () => {
    const doc = page("http://localhost:8888/lab", { baseUrl: "/", wsUrl: "ws://ws.example:9000/" });
    assert.equal(pageEndpoint(doc)?.url, "ws://ws.example:9000/api/channels/websocket");
  });

  test("works without a token (the login cookie authenticates)", () => {
    const doc = page("http://localhost:8888/lab", { baseUrl: "/" });
    assert.deepEqual(pageEndpoint(doc), {
      url: "ws://localhost:8888/api/channels/websocket",
      token: "",
    });
  });

  test("is null outside a Jupyter page, or with unreadable config", () => {
    assert.equal(pageEndpoint(page("vscode-webview://x/")), null);
    assert.equal(pageEndpoint(page("http://localhost/", "{not json")), null);
  });
});

describe("kernelEndpoint", () => {
  /**
   * A widget model whose kernel side answers the endpoint question with `answer`.
   * @param {Record<string, unknown>} answer
   */
  function model(answer) {
    /** @type {Set<(msg: any) => void>} */
    const handlers = new Set();
    return /** @type {any} */ ({
      on: (/** @type {string} */ _event, /** @type {(msg: any) => void} */ fn) => handlers.add(fn),
      off: (/** @type {string} */ _event, /** @type {(msg: any) => void} */ fn) => handlers.delete(fn),
      send: () => queueMicrotask(() => handlers.forEach((fn) => fn({ kind: "endpoint", ...answer }))),
    });
  }

  test("carries the login path of a channels service under JupyterHub", async () => {
    const url = "ws://127.0.0.1:8000/services/channels/api/channels/websocket";
    const login = "/services/channels/api/channels/login";
    assert.deepEqual(await kernelEndpoint(model({ url, token: "", login }), () => {}), { url, token: "", login });
  });

  test("has no login path otherwise", async () => {
    const url = "ws://127.0.0.1:8888/api/channels/websocket";
    assert.deepEqual(await kernelEndpoint(model({ url, token: "k" }), () => {}), { url, token: "k" });
  });
});

describe("pngData", () => {
  const dot = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

  test("accepts plain base64, also split in lines as nbformat stores it", () => {
    assert.equal(pngData(dot), dot);
    assert.equal(pngData([dot.slice(0, 40) + "\n", dot.slice(40)]), dot);
  });

  test("refuses anything that is not base64", () => {
    for (const bad of ['x" onerror="alert(1)', "abc", "", "AAAA====", "data:image/png;base64,AAAA"]) {
      assert.equal(pngData(bad), null, bad);
    }
    assert.equal(pngData(42), null);
    assert.equal(pngData({ toString: () => dot }), null);
  });
});

describe("refusalLine", () => {
  test("names the topic, the reason and the server's detail", () => {
    const detail = "not allowed to join 'user:ada:inbox' (rule 3: topic 'user:{user}:*', join '{user}')";
    assert.equal(
      refusalLine("user:ada:inbox", { reason: "unauthorized", detail }),
      `cannot join user:ada:inbox (unauthorized): ${detail}`,
    );
  });

  test("stands without a detail", () => {
    assert.equal(refusalLine("x", { reason: "join_rejected", detail: "" }), "cannot join x (join_rejected)");
  });
});

describe("serverAnswer", () => {
  test("reads a ChannelError, also one of another copy of the module (by shape)", () => {
    const detail = "not allowed to join 'x' (no rule matches it)";
    assert.deepEqual(serverAnswer(new ChannelError("unauthorized", detail)), { reason: "unauthorized", detail });
    /** A ChannelError of another module instance: same shape, another class. */
    class ForeignError extends Error {
      reason = "unauthorized";
      detail = detail;
    }
    assert.deepEqual(serverAnswer(new ForeignError("unauthorized: x")), { reason: "unauthorized", detail });
  });

  test("is null for anything else", () => {
    assert.equal(serverAnswer(new Error("boom")), null);
    assert.equal(serverAnswer(undefined), null);
  });
});
