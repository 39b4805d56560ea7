"""Every notebook in notebooks/ runs top to bottom in a real kernel against a real server.

Cells tagged ``ui-only`` would be skipped (none are today); the Python API calls
always run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .support import SpawnedServer

#: Text each notebook must print: it did what it says, not only "ran".
EXPECTED = {
    "cross-kernel-metrics": "40 points plotted live",
    "custom-channel": "refused: not allowed in this room",
    "share-cells": "pi is about 3.142",
    "teaching": "live updates, then the final states: ['ok', 'ok']",
}

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def server(spawned_server: SpawnedServer) -> SpawnedServer:
    return spawned_server


def test_the_notebooks_are_there():
    names = {path.name for path in NOTEBOOKS}
    assert {
        "chat.ipynb",
        "share-cells.ipynb",
        "cross-kernel-metrics.ipynb",
        "custom-channel.ipynb",
        "teaching.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_without_error(path, server, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    notebook.cells = [c for c in notebook.cells if "ui-only" not in c.metadata.get("tags", [])]
    shutil.copy(path, tmp_path / path.name)
    # The kernel finds the server as a kernel started by it would.
    monkeypatch.setenv("JUPYTER_CHANNELS_URL", server.ws_url)
    monkeypatch.setenv("JUPYTER_CHANNELS_TOKEN", server.token)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / path.name))
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=dict(os.environ))  # raises CellExecutionError on the first error
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    text = "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert EXPECTED.get(path.stem, "") in text
