// The notebook document a widget is shown in, where shared code can be put as new
// cells: never run, only inserted.
//
// In JupyterLab 4 and Notebook 7 the widget manager of a notebook
// (@jupyter-widgets/jupyterlab-manager's WidgetManager) holds the document's context,
// whose model's `sharedModel` is the notebook's YNotebook (@jupyter/ydoc): adding a
// cell to it adds the cell to the open notebook, as the notebook's own "insert cell"
// does. Other hosts (a console, marimo, VS Code, Colab) have no such context.

/**
 * A notebook the widget can add cells to.
 * @typedef {object} Notebook
 * @property {(source: string, metadata?: Record<string, unknown>) => void} insertCell
 *   add a code cell holding `source` at the end of the notebook (not run)
 * @property {() => number} cellCount the number of cells the notebook has
 */

/**
 * The YNotebook of the notebook holding this widget, or null.
 * @param {any} model an anywidget model (its `widget_manager` is the host's)
 * @returns {any}
 */
function sharedNotebook(model) {
  try {
    const shared = model?.widget_manager?.context?.model?.sharedModel;
    if (!shared || typeof shared !== "object") return null;
    if (typeof shared.addCell !== "function" && typeof shared.insertCell !== "function") return null;
    return shared;
  } catch {
    // A disposed manager's getters may throw: no notebook.
    return null;
  }
}

/**
 * The notebook document holding this widget, where cells can be inserted; null in hosts
 * without one.
 * @param {any} model an anywidget model
 * @returns {Notebook | null}
 */
export function notebookOf(model) {
  if (!sharedNotebook(model)) return null;
  return {
    insertCell(source, metadata = {}) {
      // Looked up again on each insert: the manager outlives a notebook that is closed.
      const shared = sharedNotebook(model);
      if (!shared) throw new Error("the notebook is no longer open");
      const cell = {
        cell_type: "code",
        source: String(source),
        metadata: structuredClone(metadata),
        outputs: [],
        execution_count: null,
      };
      if (typeof shared.addCell === "function") shared.addCell(cell);
      else shared.insertCell(shared.cells?.length ?? 0, cell);
    },
    cellCount() {
      const shared = sharedNotebook(model);
      return Array.isArray(shared?.cells) ? shared.cells.length : 0;
    },
  };
}
