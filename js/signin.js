// Signing in to a channels service that runs as a JupyterHub service.
//
// The service's login endpoint (`{prefix}api/channels/login`) answers a signed-in
// browser with JSON, and redirects any other to the hub's OAuth. When the hub
// approves without asking (`oauth_no_confirm`, a user logged in to the hub) the
// redirects come back to the service, which sets its cookie and answers with JSON:
// a same-origin fetch that follows the redirects signs in without a page. A hub
// that shows a page (a confirmation, its login form) ends the fetch on HTML: not
// signed in, and the person signs in through a link.

/** How long one sign-in (the login endpoint and its redirects) may take. */
export const SIGN_IN_TIMEOUT_MS = 10_000;

/**
 * Sign in through the login endpoint, following the OAuth redirects.
 * Never throws: anything but a JSON answer naming the user (an HTML page, an error
 * status, a network error, a cross-origin redirect, a timeout) is null.
 * @param {string} loginUrl the login endpoint, on the page's own origin
 * @param {typeof fetch} [fetchImpl]
 * @returns {Promise<{username: string, name: string} | null>}
 */
export async function signIn(loginUrl, fetchImpl = globalThis.fetch) {
  try {
    /** @type {RequestInit} */
    const init = {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      redirect: "follow",
      cache: "no-store",
    };
    if (typeof AbortSignal.timeout === "function") init.signal = AbortSignal.timeout(SIGN_IN_TIMEOUT_MS);
    const response = await fetchImpl(loginUrl, init);
    if (!response.ok) return null;
    if (!(response.headers.get("Content-Type") ?? "").toLowerCase().includes("json")) return null;
    /** @type {any} */
    const user = await response.json();
    if (typeof user?.username !== "string" || !user.username) return null;
    return { username: user.username, name: typeof user.name === "string" && user.name ? user.name : user.username };
  } catch {
    return null;
  }
}

/**
 * Where the page connects to a channels service behind the hub it is served by:
 * the kernel's answer names the service as the kernel reaches it (the hub's
 * internal address), and the page goes through the hub's proxy on its own origin
 * instead. The socket URL keeps the kernel's path on the page's origin (ws, or wss
 * for an https page, no query); the login path becomes an absolute URL on the same
 * origin. Null when the page is not served over http(s) or the login path would
 * leave the page's origin.
 * @param {{url: string, login: string}} answer the kernel's endpoint answer
 * @param {string} pageUrl the page's address
 * @returns {{url: string, login: string} | null}
 */
export function hubEndpoint(answer, pageUrl) {
  let page, socket, login;
  try {
    page = new URL(pageUrl);
    socket = new URL(answer.url);
    login = new URL(answer.login, page);
  } catch {
    return null;
  }
  if (page.protocol !== "http:" && page.protocol !== "https:") return null;
  if (login.origin !== page.origin) return null;
  // The path set on the page's origin (never resolved against it: `//host/...` stays a path).
  const url = new URL(page.origin);
  url.pathname = socket.pathname;
  url.protocol = page.protocol === "https:" ? "wss:" : "ws:";
  login.hash = "";
  return { url: url.href, login: login.href };
}
