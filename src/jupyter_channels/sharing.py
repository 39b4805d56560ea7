"""Shared cells: the ``cell`` message payload, built from a cell's source and outputs.

A ``cell`` payload is ``{"source", "language", "execution_count"?, "outputs"?,
"outputs_note"?, "notebook"?, "id"?, "status"?}``; ``outputs`` follow nbformat's
shapes: ``stream`` and ``error`` outputs, and results and displays limited to the
data types in ``SHARED_MIMETYPES``. A live cell (``%%share --live``) carries ``id``
(the same in every frame of one run) and ``status`` ("running", "ok", "error").
A received cell is data: nothing here or in the widget ever runs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .constants import DEFAULT_MAX_MESSAGE_SIZE, Subject
from .protocol import dumps

#: Data types a shared output carries as text (HTML and SVG are sanitized when shown).
TEXT_MIMETYPES = ("text/plain", "text/html", "image/svg+xml", "text/markdown", "text/latex")
#: Image types a shared output carries as base64 (checked).
BASE64_MIMETYPES = ("image/png", "image/jpeg")
#: The data types a shared output may carry; other types are left out (``text/plain``,
#: which every display has, stays).
SHARED_MIMETYPES = TEXT_MIMETYPES + BASE64_MIMETYPES
#: The largest ``cell`` payload sent with its outputs (UTF-8 bytes of its JSON): the
#: server's default ``max_message_size`` less room for the frame around it. Over it,
#: ``outputs`` is ``[]`` and ``outputs_note`` says so.
MAX_CELL_BYTES = DEFAULT_MAX_MESSAGE_SIZE - 16 * 1024
_SHARE_LINE = re.compile(r"^\s*%%share\b[^\n]*(\n|$)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


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


def _text(value: Any) -> str | None:
    """A text value as a string; nbformat splits multi-line text into a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return None


def shared_data(data: Mapping[str, Any]) -> dict[str, str]:
    """``data`` limited to ``SHARED_MIMETYPES``: text types as strings, images as valid
    base64 (bytes are encoded)."""
    out: dict[str, str] = {}
    for mimetype in TEXT_MIMETYPES:
        text = _text(data.get(mimetype))
        if text is not None:
            out[mimetype] = text
    for mimetype in BASE64_MIMETYPES:
        image = data.get(mimetype)
        if isinstance(image, bytes):
            image = base64.b64encode(image).decode()
        image = _text(image)
        if image is not None:
            image = image.replace("\n", "")
            if _is_base64(image):
                out[mimetype] = image
    return out


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours in tracebacks)."""
    return _ANSI.sub("", text)


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


def error(ename: str, evalue: str, traceback: Iterable[str]) -> dict[str, Any]:
    """An ``error`` output; ``traceback`` as lines of plain text."""
    lines = strip_ansi("\n".join(traceback)).splitlines()
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines}


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
    if kind == "error":
        ename, evalue, traceback = (output.get(k) for k in ("ename", "evalue", "traceback"))
        if isinstance(ename, str) and isinstance(evalue, str) and isinstance(traceback, list):
            return error(ename, evalue, [str(line) for line in traceback])
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
    share_id: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The payload of a ``cell`` message; outputs that would take it over
    ``MAX_CELL_BYTES`` are left out, with ``outputs_note`` saying so."""
    payload: dict[str, Any] = {"source": strip_share_line(source), "language": language}
    if execution_count is not None:
        payload["execution_count"] = execution_count
    name = notebook if notebook is not None else notebook_name()
    if name:
        payload["notebook"] = name
    if share_id is not None:
        payload["id"] = share_id
    if status is not None:
        payload["status"] = status
    kept = [output for output in outputs if output]
    if kept:
        payload["outputs"] = kept
        if len(dumps(payload).encode()) > MAX_CELL_BYTES:
            too_large(payload, len(dumps(kept).encode()))
    return payload


def too_large(payload: dict[str, Any], size: int) -> None:
    """Leave ``payload``'s outputs out, noting their ``size`` in bytes."""
    payload["outputs"] = []
    payload["outputs_note"] = f"outputs too large, not shared ({size} bytes)"


SUBJECT = Subject.CELL.value
