// Signing in to a channels service under JupyterHub, and where the page then connects.
// node --test js/tests/

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import { hubEndpoint, signIn } from "../signin.js";

const LOGIN = "http://hub.example/services/channels/api/channels/login";

/**
 * A fetch that answers every request with `response` and records what it was asked.
 * @param {Response | (() => never)} response
 */
function fakeFetch(response) {
  /** @type {{url: string, init: RequestInit | undefined}[]} */
  const calls = [];
  /** @type {typeof fetch} */
  const fetchImpl = async (url, init) => {
    calls.push({ url: String(url), init });
    return typeof response === "function" ? response() : response;
  };
  return { fetchImpl, calls };
}

/**
 * @param {unknown} body
 * @param {number} [status]
 */
function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** @param {string} body */
function html(body) {
  return new Response(body, { status: 200, headers: { "Content-Type": "text/html; charset=UTF-8" } });
}

describe("signIn", () => {
  test("gives the user of a JSON answer", async () => {
    const { fetchImpl } = fakeFetch(json({ username: "ada", name: "Ada Lovelace" }));
    assert.deepEqual(await signIn(LOGIN, fetchImpl), { username: "ada", name: "Ada Lovelace" });
  });

  test("names the user by username when the answer has no name", async () => {
    const { fetchImpl } = fakeFetch(json({ username: "ada" }));
    assert.deepEqual(await signIn(LOGIN, fetchImpl), { username: "ada", name: "ada" });
  });

  test("sends the cookie, asks for JSON, follows redirects and skips the cache", async () => {
    const { fetchImpl, calls } = fakeFetch(json({ username: "ada", name: "ada" }));
    await signIn(LOGIN, fetchImpl);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, LOGIN);
    const init = /** @type {RequestInit} */ (calls[0].init);
    assert.equal(init.credentials, "same-origin");
    assert.deepEqual(init.headers, { Accept: "application/json" });
    assert.equal(init.redirect, "follow");
    assert.equal(init.cache, "no-store");
  });

  test("is null when the redirects end on an HTML page (a confirmation, the hub's login)", async () => {
    const { fetchImpl } = fakeFetch(html("<!DOCTYPE html><form>Authorize access</form>"));
    assert.equal(await signIn(LOGIN, fetchImpl), null);
  });

  test("is null for an HTML page that is valid JSON", async () => {
    const { fetchImpl } = fakeFetch(
      new Response('{"username": "ada"}', { status: 200, headers: { "Content-Type": "text/html" } }),
    );
    assert.equal(await signIn(LOGIN, fetchImpl), null);
  });

  test("is null for an error status, even with a JSON body", async () => {
    for (const status of [403, 500]) {
      const { fetchImpl } = fakeFetch(json({ username: "ada", name: "ada" }, status));
      assert.equal(await signIn(LOGIN, fetchImpl), null, String(status));
    }
  });

  test("is null for JSON without a string username", async () => {
    for (const body of [{}, { username: 42 }, { username: "" }, null, ["ada"]]) {
      const { fetchImpl } = fakeFetch(json(body));
      assert.equal(await signIn(LOGIN, fetchImpl), null, JSON.stringify(body));
    }
  });

  test("is null for a body that is not JSON after all", async () => {
    const { fetchImpl } = fakeFetch(
      new Response("<html>", { status: 200, headers: { "Content-Type": "application/json" } }),
    );
    assert.equal(await signIn(LOGIN, fetchImpl), null);
  });

  test("is null when fetch throws (a network error, a cross-origin redirect)", async () => {
    const { fetchImpl } = fakeFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    assert.equal(await signIn(LOGIN, fetchImpl), null);
  });
});

describe("signIn over HTTP", () => {
  // A service and hub in one: the login endpoint redirects to an authorize URL,
  // which either comes back through the callback to a JSON answer or shows a page.
  /** @type {import("node:http").Server} */
  let server;
  let base = "";

  before(async () => {
    server = createServer((request, response) => {
      const path = new URL(request.url ?? "/", "http://x").pathname;
      /** @param {string} location */
      const redirect = (location) => response.writeHead(302, { Location: location }).end();
      if (path === "/ok/login") return redirect("/hub/authorize?next=/ok/callback");
      if (path === "/hub/authorize") return redirect("/ok/callback");
      if (path === "/ok/callback") return redirect("/ok/signed-in");
      if (path === "/ok/signed-in") {
        response.writeHead(200, { "Content-Type": "application/json" });
        return response.end(JSON.stringify({ username: "ada", name: "Ada" }));
      }
      if (path === "/confirm/login") return redirect("/hub/confirm");
      if (path === "/hub/confirm") {
        response.writeHead(200, { "Content-Type": "text/html" });
        return response.end("<!DOCTYPE html><p>Authorize access to channels?</p>");
      }
      response.writeHead(404).end();
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
    const address = /** @type {import("node:net").AddressInfo} */ (server.address());
    base = `http://127.0.0.1:${address.port}`;
  });

  after(async () => {
    await new Promise((resolve) => server.close(() => resolve(undefined)));
  });

  test("follows the OAuth redirects to the JSON answer", async () => {
    assert.deepEqual(await signIn(`${base}/ok/login`), { username: "ada", name: "Ada" });
  });

  test("is null when the redirects end on the hub's page", async () => {
    assert.equal(await signIn(`${base}/confirm/login`), null);
  });

  test("is null when nothing answers", async () => {
    assert.equal(await signIn(`${base}/nothing`), null);
  });
});

describe("hubEndpoint", () => {
  const kernelUrl = "ws://127.0.0.1:8000/services/channels/api/channels/websocket";
  const login = "/services/channels/api/channels/login";

  test("connects on the page's origin, ws for an http page", () => {
    assert.deepEqual(hubEndpoint({ url: kernelUrl, login }, "http://localhost:8000/user/ada/lab/tree/a.ipynb"), {
      url: "ws://localhost:8000/services/channels/api/channels/websocket",
      login: "http://localhost:8000/services/channels/api/channels/login",
    });
  });

  test("connects with wss for an https page", () => {
    assert.deepEqual(hubEndpoint({ url: kernelUrl, login }, "https://hub.example/user/ada/lab"), {
      url: "wss://hub.example/services/channels/api/channels/websocket",
      login: "https://hub.example/services/channels/api/channels/login",
    });
  });

  test("keeps the kernel's path and drops its query and fragment", () => {
    const url = "wss://channels.internal:9000/services/chat/api/channels/websocket?token=secret#x";
    const endpoint = hubEndpoint({ url, login: "/services/chat/api/channels/login" }, "https://hub.example/lab?a=1");
    assert.equal(endpoint?.url, "wss://hub.example/services/chat/api/channels/websocket");
  });

  test("keeps a path that starts with two slashes on the page's origin", () => {
    const url = "ws://127.0.0.1:8000//evil.example/api/channels/websocket";
    assert.equal(
      hubEndpoint({ url, login }, "https://hub.example/lab")?.url,
      "wss://hub.example//evil.example/api/channels/websocket",
    );
  });

  test("is null for a login URL on another origin, or a page not served over http(s)", () => {
    for (const other of ["https://evil.example/login", "//evil.example/login", "javascript:alert(1)"]) {
      assert.equal(hubEndpoint({ url: kernelUrl, login: other }, "https://hub.example/lab"), null, other);
    }
    assert.equal(hubEndpoint({ url: kernelUrl, login }, "vscode-webview://abc/index.html"), null);
    assert.equal(hubEndpoint({ url: "not a url", login }, "https://hub.example/lab"), null);
  });
});
