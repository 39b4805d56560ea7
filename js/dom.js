// Small DOM helpers of the widget's views: every string goes in as text.

import { ChannelError } from "./client.js";

/** Longest text of one output or JSON payload shown; the rest is cut. */
const MAX_TEXT = 20_000;

/**
 * An element with a class and, optionally, text (always as textContent).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} className
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** @param {unknown} value */
export function clip(value) {
  const text = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : "";
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

/** @param {unknown} value */
export function compactJson(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return clip(text ?? "null");
}

/**
 * @param {string} text
 * @param {HTMLElement} code
 * @param {HTMLButtonElement} button
 */
export function copyText(text, code, button) {
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  };
  const select = () => {
    // Without the async clipboard (a page that is not a secure context): select the code.
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(code);
    selection?.removeAllRanges();
    selection?.addRange(range);
    if (document.execCommand?.("copy")) done();
  };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).then(done, select);
  else select();
}

/** @param {unknown} error */
export function describe(error) {
  if (error instanceof ChannelError) return error.detail || error.reason;
  return error instanceof Error ? error.message : String(error);
}
