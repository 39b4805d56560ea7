// How a shared cell is drawn: its code, its state while it runs, then its outputs.
//
// A live cell (one whose payload has an `id`) is sent again and again while it runs
// (`status` "running", ephemeral frames) and once more when it ends ("ok" or "error",
// the stored message): the feed keeps one block per id and redraws it in place.
// Outputs show the richest type this module can show safely; HTML, SVG, Markdown and
// LaTeX only through js/sanitize.js and js/markdown.js, images only as checked base64.

import { clip, copyText, h } from "./dom.js";
import { Subject } from "./constants.js";
import { renderLatex, renderMarkdown } from "./markdown.js";
import { sanitizeHtml, sanitizeSvg } from "./sanitize.js";

/** @typedef {import("./client.js").Message} Message */

/** Outputs of a shared cell shown at most. */
const MAX_OUTPUTS = 50;
/** Longest base64 image shown (the server's message size caps it anyway). */
const MAX_IMAGE = 8 * 1024 * 1024;
/** Longest HTML, SVG, Markdown or LaTeX rendered; longer ones are shown as their text/plain. */
const MAX_MARKUP = 2 * 1024 * 1024;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const ANSI_RE = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;

/** The states of a live cell, as its `status` says. */
export const CellStatus = Object.freeze({ RUNNING: "running", OK: "ok", ERROR: "error" });

/** The markup types and what renders each (sanitized, as DOM fragments). */
const markup = {
  html: sanitizeHtml,
  svg: sanitizeSvg,
  markdown: renderMarkdown,
  latex: renderLatex,
};

/**
 * The base64 of an image output, or null when it is not plain base64.
 * @param {unknown} value a string or a list of strings (nbformat splits lines)
 */
export function pngData(value) {
  const joined = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : null;
  if (joined === null || joined.length > MAX_IMAGE) return null;
  const clean = joined.replace(/\s+/g, "");
  if (!clean || clean.length % 4 !== 0 || !BASE64_RE.test(clean)) return null;
  return clean;
}

/**
 * The status of a shared cell: "running", "ok" or "error"; a cell without one (from an
 * older sender) is finished, "error" when an output is an error.
 * @param {any} payload
 */
export function cellStatus(payload) {
  const status = payload?.status;
  if (status === CellStatus.RUNNING || status === CellStatus.OK || status === CellStatus.ERROR) {
    return status;
  }
  const outputs = Array.isArray(payload?.outputs) ? payload.outputs : [];
  return outputs.some((/** @type {any} */ o) => o?.output_type === "error") ? CellStatus.ERROR : CellStatus.OK;
}

/**
 * The id of a live cell message (the same in every frame of one run), or null.
 * @param {Message} message
 * @returns {string | null}
 */
export function liveCellId(message) {
  if (message?.subject !== Subject.CELL) return null;
  const id = /** @type {any} */ (message.payload)?.id;
  return typeof id === "string" && id ? id : null;
}

/**
 * Where a received message goes in a feed: appended, in place of the block of the same
 * live cell (at `index`), or nowhere (a running frame that arrives after the final one).
 * @param {Message[]} feed
 * @param {Message} message
 * @returns {{action: "append"} | {action: "replace", index: number} | {action: "ignore"}}
 */
export function placeMessage(feed, message) {
  const id = liveCellId(message);
  if (id === null) return { action: "append" };
  for (let index = feed.length - 1; index >= 0; index--) {
    if (liveCellId(feed[index]) !== id) continue;
    return supersedes(feed[index], message) ? { action: "replace", index } : { action: "ignore" };
  }
  return { action: "append" };
}

/**
 * Whether a frame of a live cell replaces the one shown for it: any frame does, except a
 * running one once the final one is shown (an ephemeral frame overtaken by the stored one).
 * @param {Message} shown
 * @param {Message} message
 */
export function supersedes(shown, message) {
  const shownFinal = cellStatus(shown.payload) !== CellStatus.RUNNING;
  return !(shownFinal && cellStatus(message.payload) === CellStatus.RUNNING);
}

/**
 * Text as a terminal shows it: ANSI escapes dropped, and a carriage return going back
 * to the start of its line, the text after it overwriting what was there (progress bars).
 * @param {string} text
 */
export function terminalText(text) {
  const plain = text.replace(ANSI_RE, "");
  if (!plain.includes("\r")) return plain;
  return plain
    .replace(/\r+\n/g, "\n")
    .split("\n")
    .map((line) => {
      let shown = "";
      for (const part of line.split("\r")) shown = part + shown.slice(part.length);
      return shown;
    })
    .join("\n");
}

/**
 * The extra things a cell's header holds: a control next to the author's name (the
 * Follow toggle of js/follow.js), built by the view.
 * @typedef {{control?: HTMLElement | null}} CellOptions
 */

/**
 * A shared cell: its code with the language, its state and a Copy button, then its
 * outputs, each drawn as its richest safe type.
 * @param {any} payload
 * @param {CellOptions} [options]
 */
export function renderCell(payload, options = {}) {
  const status = cellStatus(payload);
  const cell = h("div", "jc-cell");
  cell.dataset.status = status;
  if (typeof payload?.id === "string") cell.dataset.cellId = payload.id;
  const bar = h("div", "jc-cell-bar");
  const source = clip(payload?.source);
  bar.append(h("span", "jc-lang", typeof payload?.language === "string" ? payload.language : "code"));
  if (typeof payload?.execution_count === "number") {
    bar.append(h("span", "jc-exec", `[${payload.execution_count}]`));
  }
  if (typeof payload?.notebook === "string") bar.append(h("span", "jc-notebook", payload.notebook));
  if (typeof payload?.status === "string") {
    const badge = h("span", "jc-status", status);
    badge.dataset.status = status;
    badge.title = status === CellStatus.RUNNING ? "running: updates as it runs" : `finished: ${status}`;
    bar.append(badge);
  }
  const copy = h("button", "jc-copy", "Copy");
  copy.type = "button";
  copy.title = "Copy the code";
  const code = h("code", "", source);
  copy.addEventListener("click", () => copyText(source, code, copy));
  if (options.control) bar.append(options.control);
  bar.append(copy);
  const pre = h("pre", "jc-code");
  pre.append(code);
  cell.append(bar, pre);
  const all = Array.isArray(payload?.outputs) ? payload.outputs : [];
  const box = h("div", "jc-outputs");
  for (const output of all.slice(0, MAX_OUTPUTS)) {
    const shown = renderOutput(output);
    if (shown) box.append(shown);
  }
  if (all.length > MAX_OUTPUTS) {
    box.append(h("div", "jc-outputs-note", `${all.length - MAX_OUTPUTS} more outputs not shown`));
  }
  if (typeof payload?.outputs_note === "string" && payload.outputs_note) {
    box.append(h("div", "jc-outputs-note", clip(payload.outputs_note)));
  }
  if (box.childElementCount) cell.append(box);
  return cell;
}

/**
 * One output: a stream's text, an error's traceback, or a display's richest safe type.
 * @param {any} output
 * @returns {HTMLElement | null}
 */
export function renderOutput(output) {
  if (!output || typeof output !== "object") return null;
  if (output.output_type === "stream") {
    const stderr = output.name === "stderr";
    return h("pre", stderr ? "jc-stream jc-stderr" : "jc-stream", terminalText(clip(output.text)));
  }
  if (output.output_type === "error") {
    const lines = Array.isArray(output.traceback) ? output.traceback.map(String) : [];
    const text = lines.length ? lines.join("\n") : `${clip(output.ename)}: ${clip(output.evalue)}`;
    return h("pre", "jc-traceback", terminalText(clip(text)));
  }
  const data = output.data;
  if (!data || typeof data !== "object") return null;
  return renderData(data);
}

/**
 * The richest type of a display's data shown safely: HTML, SVG, PNG or JPEG, Markdown,
 * LaTeX, then text/plain. A type whose renderer fails falls through to the next.
 * @param {Record<string, unknown>} data
 * @returns {HTMLElement | null}
 */
function renderData(data) {
  const plain = data["text/plain"];
  const tries = [
    () => markupBlock(data["text/html"], markup.html, "jc-html"),
    () => markupBlock(data["image/svg+xml"], markup.svg, "jc-svg"),
    () => imageBlock(data["image/png"], "image/png", plain),
    () => imageBlock(data["image/jpeg"], "image/jpeg", plain),
    () => markupBlock(data["text/markdown"], markup.markdown, "jc-markdown"),
    () => markupBlock(data["text/latex"], markup.latex, "jc-latex"),
  ];
  for (const attempt of tries) {
    let shown = null;
    try {
      shown = attempt();
    } catch {
      shown = null;
    }
    if (shown) return shown;
  }
  if (plain !== undefined) return h("pre", "jc-plain", terminalText(clip(plain)));
  return null;
}

/**
 * @param {unknown} value
 * @param {(text: string) => Node} render
 * @param {string} className
 */
function markupBlock(value, render, className) {
  const text = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : null;
  if (!text || text.length > MAX_MARKUP) return null;
  const fragment = render(text);
  // Nothing left once sanitized (only a script, say): the next type is shown instead.
  if (!fragment.childNodes.length) return null;
  const block = h("div", `jc-rich ${className}`);
  block.append(fragment);
  return block;
}

/**
 * @param {unknown} value
 * @param {"image/png" | "image/jpeg"} type
 * @param {unknown} plain
 */
function imageBlock(value, type, plain) {
  const base64 = pngData(value);
  if (!base64) return null;
  const img = h("img", "jc-image");
  img.alt = clip(plain) || "image";
  img.src = `data:${type};base64,${base64}`;
  return img;
}
