"""Shared cells: the ``cell`` message payload, built from a cell's source and outputs.

A ``cell`` payload is ``{"source", "language", "execution_count"?, "outputs"?,
"notebook"?}``; ``outputs`` follow nbformat's shapes, limited to ``stream``
outputs and the ``text/plain`` / ``image/png`` data of results and displays.
A received cell is data: nothing here or in the widget ever runs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .constants import Subject

#: The data types a shared output may carry.
SHARED_MIMETYPES = ("text/plain", "image/png")
_SHARE_LINE = re.compile(r"^\s*%%share\b[^\n]*(\n|$)")


def strip_share_line(source: str) -> str:
    """The cell's code without a leading ``%%share`` line (and without the newline
    IPython adds to a cell magic's body)."""
    source = _SHARE_LINE.sub("", source, count=1)
    return source[:-1] if source.endswith("\n") else source


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def shared_data(data: Mapping[str, Any]) -> dict[str, str]:
    """``data`` limited to ``text/plain`` and valid base64 ``image/png``."""
    out: dict[str, str] = {}
    text = data.get("text/plain")
    if isinstance(text, str):
        out["text/plain"] = text
    png = data.get("image/png")
    if isinstance(png, bytes):
        png = base64.b64encode(png).decode()
    if isinstance(png, str) and _is_base64(png.replace("\n", "")):
        out["image/png"] = png.replace("\n", "")
    return out


def stream(name: str, text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def display_data(data: Mapping[str, Any]) -> dict[str, Any] | None:
    shared = shared_data(data)
    return {"output_type": "display_data", "data": shared, "metadata": {}} if shared else None


def execute_result(data: Mapping[str, Any], execution_count: int | None) -> dict[str, Any] | None:
    shared = shared_data(data)
    if not shared:
        return None
    return {
        "output_type": "execute_result",
        "data": shared,
        "metadata": {},
        "execution_count": execution_count,
    }


def shared_output(output: Mapping[str, Any]) -> dict[str, Any] | None:
    """An nbformat output limited to what a shared cell carries, or ``None``."""
    kind = output.get("output_type")
    if kind == "stream":
        text = output.get("text")
        if isinstance(text, list):
            text = "".join(str(part) for part in text)
        name = output.get("name")
        if isinstance(text, str) and name in ("stdout", "stderr"):
            return stream(str(name), text)
        return None
    data = output.get("data")
    if not isinstance(data, Mapping):
        return None
    if kind == "execute_result":
        count = output.get("execution_count")
        return execute_result(data, count if isinstance(count, int) else None)
    if kind == "display_data":
        return display_data(data)
    return None


def notebook_name() -> str | None:
    """The notebook this kernel runs for, where Jupyter Server says (``JPY_SESSION_NAME``)."""
    path = os.environ.get("JPY_SESSION_NAME")
    return os.path.basename(path) if path else None


def cell_payload(
    source: str,
    *,
    language: str = "python",
    execution_count: int | None = None,
    outputs: Iterable[dict[str, Any] | None] = (),
    notebook: str | None = None,
) -> dict[str, Any]:
    """The payload of a ``cell`` message."""
    payload: dict[str, Any] = {"source": strip_share_line(source), "language": language}
    if execution_count is not None:
        payload["execution_count"] = execution_count
    kept = [output for output in outputs if output]
    if kept:
        payload["outputs"] = kept
    name = notebook if notebook is not None else notebook_name()
    if name:
        payload["notebook"] = name
    return payload


SUBJECT = Subject.CELL.value
