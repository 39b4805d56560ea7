// Shared cells: which frame of a live cell the feed shows, and how outputs are drawn.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><body></body>");
const g = /** @type {any} */ (globalThis);
g.window = dom.window;
g.document = dom.window.document;

const { cellStatus, liveCellId, placeMessage, renderCell, renderOutput, terminalText } = await import(
  "../cells.js"
);

/**
 * @param {Record<string, unknown>} payload
 * @param {number | null} [offset]
 * @returns {any}
 */
function cellMessage(payload, offset = null) {
  return { topic: "t", subject: "cell", payload, offset, ts: 0, from: { user: "alice", kind: "kernel" } };
}

describe("live cells in the feed", () => {
  test("a frame of an id already shown replaces that block", () => {
    const text = /** @type {any} */ ({ topic: "t", subject: "text", payload: { text: "hi" }, offset: 1, ts: 0 });
    const first = cellMessage({ id: "a", status: "running", source: "x", outputs: [] });
    const feed = /** @type {any[]} */ ([text, first]);
    assert.deepEqual(placeMessage(feed, text), { action: "append" });
    assert.deepEqual(placeMessage([text], first), { action: "append" });
    const next = cellMessage({ id: "a", status: "running", source: "x", outputs: [{}] });
    assert.deepEqual(placeMessage(feed, next), { action: "replace", index: 1 });
    const final = cellMessage({ id: "a", status: "ok", source: "x", outputs: [] }, 2);
    assert.deepEqual(placeMessage(feed, final), { action: "replace", index: 1 });
    // Another id is another block.
    assert.deepEqual(placeMessage(feed, cellMessage({ id: "b", status: "running" })), { action: "append" });
  });

  test("a running frame that arrives after the final one is ignored", () => {
    const final = cellMessage({ id: "a", status: "error", source: "x", outputs: [] }, 2);
    const late = cellMessage({ id: "a", status: "running", source: "x", outputs: [] });
    assert.deepEqual(placeMessage([final], late), { action: "ignore" });
  });

  test("cells without an id or status are finished cells of their own", () => {
    const old = cellMessage({ source: "x", outputs: [] }, 3);
    assert.equal(liveCellId(old), null);
    assert.equal(cellStatus(old.payload), "ok");
    assert.equal(cellStatus({ outputs: [{ output_type: "error", ename: "E", evalue: "" }] }), "error");
    assert.deepEqual(placeMessage([old], old), { action: "append" });
  });
});

describe("terminalText", () => {
  test("a carriage return overwrites its line, as a terminal shows progress", () => {
    assert.equal(terminalText("10%\r20%\r30%"), "30%");
    assert.equal(terminalText("working 10%\rdone\n"), "doneing 10%\n");
    assert.equal(terminalText("a\r\nb"), "a\nb");
    assert.equal(terminalText("\x1b[31mred\x1b[0m text"), "red text");
  });
});

describe("renderCell", () => {
  test("shows the running badge, then ok or error", () => {
    const running = renderCell({ id: "a", status: "running", source: "x", outputs: [] });
    assert.equal(running.dataset.status, "running");
    assert.equal(running.querySelector(".jc-status")?.textContent, "running");
    const failed = renderCell({ id: "a", status: "error", source: "x", outputs: [] });
    assert.equal(failed.querySelector(".jc-status")?.textContent, "error");
    // An older sender's cell has no badge.
    assert.equal(renderCell({ source: "x", outputs: [] }).querySelector(".jc-status"), null);
  });

  test("shows the outputs note, the traceback and stream text", () => {
    const cell = renderCell({
      source: "1/0",
      status: "error",
      outputs_note: "outputs too large, not shared (3.2 MB)",
      outputs: [
        { output_type: "stream", name: "stdout", text: "step 1\nstep 2\n" },
        {
          output_type: "error",
          ename: "ZeroDivisionError",
          evalue: "division by zero",
          traceback: ["Traceback (most recent call last):", "ZeroDivisionError: division by zero"],
        },
      ],
    });
    assert.equal(cell.querySelector(".jc-stream")?.textContent, "step 1\nstep 2\n");
    assert.match(cell.querySelector(".jc-traceback")?.textContent ?? "", /ZeroDivisionError: division by zero$/);
    assert.equal(cell.querySelector(".jc-outputs-note")?.textContent, "outputs too large, not shared (3.2 MB)");
  });

  test("puts the view's control in the header", () => {
    const control = document.createElement("button");
    control.className = "jc-follow";
    const cell = renderCell({ source: "x", outputs: [] }, { control });
    assert.equal(cell.querySelector(".jc-cell-bar .jc-follow"), control);
  });
});

describe("renderOutput", () => {
  test("images only as checked base64 data: URLs", () => {
    const jpeg = renderOutput({ output_type: "display_data", data: { "image/jpeg": "/9j/4AAQ", "text/plain": "<Figure>" } });
    assert.equal(jpeg?.tagName, "IMG");
    assert.equal(jpeg?.getAttribute("src"), "data:image/jpeg;base64,/9j/4AAQ");
    const bad = renderOutput({
      output_type: "display_data",
      data: { "image/png": "x\" onerror=\"alert(1)", "text/plain": "fallback" },
    });
    assert.equal(bad?.tagName, "PRE");
    assert.equal(bad?.textContent, "fallback");
  });

  test("text/plain is text, never markup", () => {
    const shown = renderOutput({ output_type: "execute_result", data: { "text/plain": "<b>not bold</b>" } });
    assert.equal(shown?.textContent, "<b>not bold</b>");
    assert.equal(shown?.querySelector("b"), null);
  });

  test("nothing for an output without anything to show", () => {
    assert.equal(renderOutput({ output_type: "display_data", data: { "application/x-thing": 1 } }), null);
    assert.equal(renderOutput(null), null);
  });
});

describe("rich outputs", () => {
  /** @param {Record<string, unknown>} data */
  const show = (data) => renderOutput({ output_type: "display_data", data, metadata: {} });

  test("a DataFrame's HTML is a table, without its <style>", () => {
    const html =
      '<div><style scoped>.dataframe tbody tr th { vertical-align: top; }</style>' +
      '<table border="1" class="dataframe"><thead><tr style="text-align: right;"><th></th><th>x</th></tr></thead>' +
      "<tbody><tr><th>0</th><td>1.5</td></tr></tbody></table></div>";
    const shown = show({ "text/html": html, "text/plain": "   x\n0  1.5" });
    assert.ok(shown?.classList.contains("jc-html"));
    assert.equal(shown?.querySelector("table.dataframe td")?.textContent, "1.5");
    assert.equal(shown?.querySelector("style"), null);
  });

  test("the richest type wins: html > svg > png/jpeg > markdown > latex > plain", () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle r="4" cx="5" cy="5"/></svg>';
    assert.ok(show({ "image/svg+xml": svg, "image/png": "iVBORw0K", "text/plain": "p" })?.querySelector("svg circle"));
    assert.equal(show({ "image/png": "iVBORw0K", "text/markdown": "**b**" })?.tagName, "IMG");
    assert.equal(show({ "text/markdown": "**bold**", "text/latex": "$x$" })?.querySelector("strong")?.textContent, "bold");
    assert.ok(show({ "text/latex": "$$\\frac{a}{b}$$", "text/plain": "a/b" })?.querySelector("math mfrac"));
  });

  test("HTML and SVG are sanitized; markup with nothing left falls back to text/plain", () => {
    const html = show({ "text/html": '<b onclick="window.__pwned=1">hi</b><script>window.__pwned=1</script>' });
    assert.equal(html?.querySelector("b")?.getAttribute("onclick"), null);
    assert.equal(html?.querySelector("script"), null);
    const only = show({ "text/html": "<script>window.__pwned=1</script>", "text/plain": "<IPython.core.display.HTML>" });
    assert.equal(only?.className, "jc-plain");
    const svg = show({
      "image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/x.png"/><rect width="1" height="1" onload="alert(1)"/></svg>',
    });
    assert.equal(svg?.querySelector("image")?.getAttribute("href") ?? null, null);
    assert.equal(svg?.querySelector("rect")?.getAttribute("onload"), null);
  });
});

describe("the XSS corpus as cell outputs", async () => {
  const { readFile } = await import("node:fs/promises");
  const corpus = JSON.parse(await readFile(new URL("../../tests/xss_corpus.json", import.meta.url), "utf8"));

  test("as text/html and image/svg+xml: no script, no handler, nothing remote", () => {
    assert.ok(corpus.length >= 40);
    for (const { name, payload } of corpus) {
      for (const type of ["text/html", "image/svg+xml"]) {
        const shown = renderOutput({ output_type: "display_data", data: { [type]: payload, "text/plain": "x" } });
        if (!shown) continue;
        for (const element of [shown, ...shown.querySelectorAll("*")]) {
          const tag = element.localName.toLowerCase();
          assert.ok(!["script", "iframe", "object", "embed", "style", "form", "foreignobject"].includes(tag), `${name} (${type}): <${tag}>`);
          for (const attr of Array.from(element.attributes)) {
            assert.doesNotMatch(attr.name, /^on/i, `${name} (${type}): ${attr.name}`);
            // A link's href (kept only for http(s) and mailto), a namespace declaration.
            if ((tag === "a" && attr.name === "href") || attr.name.startsWith("xmlns")) continue;
            assert.doesNotMatch(attr.value, /(https?:|javascript:|\/\/[a-z])/i, `${name} (${type}): ${attr.name}=${attr.value}`);
          }
        }
      }
    }
  });
});
