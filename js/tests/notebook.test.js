// notebookOf: the notebook document holding a widget, through the host's widget manager.
// node --test js/tests/

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { notebookOf } from "../notebook.js";

/**
 * The part of @jupyter/ydoc's YNotebook that inserting uses: `addCell` appends,
 * `insertCell(index, cell)` inserts, `cells` lists them.
 */
class FakeYNotebook {
  constructor() {
    /** @type {any[]} */
    this.cells = [];
  }

  /** @param {number} index @param {any} cell */
  insertCell(index, cell) {
    this.cells.splice(index, 0, cell);
    return cell;
  }

  /** @param {any} cell */
  addCell(cell) {
    return this.insertCell(this.cells.length, cell);
  }
}

/**
 * A widget model as anywidget hands it in JupyterLab: `widget_manager.context.model.sharedModel`.
 * @param {any} shared
 */
function labModel(shared) {
  return { widget_manager: { context: { model: { sharedModel: shared } } } };
}

describe("notebookOf", () => {
  test("inserts unrun code cells at the end, with their metadata", () => {
    const shared = new FakeYNotebook();
    shared.cells.push({ cell_type: "markdown", source: "# Class" });
    const notebook = notebookOf(labModel(shared));
    assert.ok(notebook);
    const metadata = { tags: ["from-alice-2026-01-02T10.00"] };
    notebook.insertCell("print(1)", metadata);
    notebook.insertCell("x = 2\nx");
    assert.equal(notebook.cellCount(), 3);
    assert.deepEqual(shared.cells.slice(1), [
      {
        cell_type: "code",
        source: "print(1)",
        metadata: { tags: ["from-alice-2026-01-02T10.00"] },
        outputs: [],
        execution_count: null,
      },
      { cell_type: "code", source: "x = 2\nx", metadata: {}, outputs: [], execution_count: null },
    ]);
    // The caller's metadata is copied, not shared with the notebook.
    metadata.tags.push("later");
    assert.deepEqual(shared.cells[1].metadata.tags, ["from-alice-2026-01-02T10.00"]);
  });

  test("uses insertCell at the end when the notebook has no addCell", () => {
    const shared = new FakeYNotebook();
    /** @type {any} */ (shared).addCell = undefined;
    shared.cells.push({ cell_type: "code", source: "a" });
    notebookOf(labModel(shared))?.insertCell("b");
    assert.deepEqual(
      shared.cells.map((c) => c.source),
      ["a", "b"],
    );
  });

  test("is null in hosts without a notebook context", () => {
    assert.equal(notebookOf({}), null);
    assert.equal(notebookOf(null), null);
    // anywidget elsewhere (marimo, VS Code): a manager with get_model only.
    assert.equal(notebookOf({ widget_manager: { get_model: () => null } }), null);
    // A console's KernelWidgetManager: no context.
    assert.equal(notebookOf({ widget_manager: { context: undefined } }), null);
    assert.equal(notebookOf(labModel({})), null);
    const throwing = {
      widget_manager: {
        get context() {
          throw new Error("disposed");
        },
      },
    };
    assert.equal(notebookOf(throwing), null);
  });

  test("refuses to insert once the notebook is gone", () => {
    const manager = { context: /** @type {any} */ ({ model: { sharedModel: new FakeYNotebook() } }) };
    const notebook = notebookOf({ widget_manager: manager });
    assert.ok(notebook);
    manager.context = null;
    assert.throws(() => notebook.insertCell("print(1)"), /no longer open/);
  });
});
