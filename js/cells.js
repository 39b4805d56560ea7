// How a shared cell is drawn: its code, then its outputs.

import { clip, copyText, h } from "./dom.js";

/** Outputs of a shared cell shown at most. */
const MAX_OUTPUTS = 20;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The base64 of an `image/png` output, or null when it is not plain base64.
 * @param {unknown} value a string or a list of strings (nbformat splits lines)
 */
export function pngData(value) {
  const joined = typeof value === "string" ? value : Array.isArray(value) ? value.join("") : null;
  if (joined === null || joined.length > 8 * 1024 * 1024) return null;
  const clean = joined.replace(/\s+/g, "");
  if (!clean || clean.length % 4 !== 0 || !BASE64_RE.test(clean)) return null;
  return clean;
}

/**
 * A shared cell: its code with the language and a Copy button, then its outputs
 * (stream text, `text/plain`, `image/png`; nothing else is shown).
 * @param {any} payload
 */
export function renderCell(payload) {
  const cell = h("div", "jc-cell");
  const bar = h("div", "jc-cell-bar");
  const source = clip(payload?.source);
  bar.append(h("span", "jc-lang", typeof payload?.language === "string" ? payload.language : "code"));
  if (typeof payload?.execution_count === "number") {
    bar.append(h("span", "jc-exec", `[${payload.execution_count}]`));
  }
  if (typeof payload?.notebook === "string") bar.append(h("span", "jc-notebook", payload.notebook));
  const copy = h("button", "jc-copy", "Copy");
  copy.type = "button";
  copy.title = "Copy the code";
  const code = h("code", "", source);
  copy.addEventListener("click", () => copyText(source, code, copy));
  bar.append(copy);
  const pre = h("pre", "jc-code");
  pre.append(code);
  cell.append(bar, pre);
  const outputs = Array.isArray(payload?.outputs) ? payload.outputs.slice(0, MAX_OUTPUTS) : [];
  if (outputs.length) {
    const box = h("div", "jc-outputs");
    for (const output of outputs) {
      const shown = renderOutput(output);
      if (shown) box.append(shown);
    }
    cell.append(box);
  }
  return cell;
}

/** @param {any} output @returns {HTMLElement | null} */
function renderOutput(output) {
  if (!output || typeof output !== "object") return null;
  if (output.output_type === "stream") {
    const stderr = output.name === "stderr";
    return h("pre", stderr ? "jc-stream jc-stderr" : "jc-stream", clip(output.text));
  }
  const data = output.data;
  if (!data || typeof data !== "object") return null;
  const png = pngData(data["image/png"]);
  if (png) {
    const img = h("img", "jc-image");
    img.alt = clip(data["text/plain"]) || "image";
    img.src = `data:image/png;base64,${png}`;
    return img;
  }
  if (data["text/plain"] !== undefined) return h("pre", "jc-plain", clip(data["text/plain"]));
  return null;
}
