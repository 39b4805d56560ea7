// A DOM for the modules that need one (DOMPurify): jsdom's window as `globalThis.window`,
// installed on import, before the first sanitize call. Scripts never run in it.

import { JSDOM } from "jsdom";

export const dom = new JSDOM("<!doctype html><html><body></body></html>");
/** @type {any} */ (globalThis).window = dom.window;

/**
 * A fragment as markup, for assertion messages.
 * @param {Node} node
 * @returns {string}
 */
export function markup(node) {
  return new dom.window.XMLSerializer().serializeToString(node);
}
