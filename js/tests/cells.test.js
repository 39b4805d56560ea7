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
