"""Capturing a running cell in IPython, for live cells: its streams and displays teed
into a :class:`~jupyter_channels.live.LiveOutputs` while the notebook still shows
them, its result kept, its tracebacks held back for the magic to show.

The context managers replace IPython's hooks for the time of a ``with`` block and put
back what was there (nested captures stack).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .live import LiveOutputs

log = logging.getLogger(__name__)


class _Tee:
    """A ``sys.stdout`` / ``sys.stderr`` that writes through and also into ``outputs``."""

    def __init__(self, stream: TextIO, name: str, outputs: LiveOutputs) -> None:
        self._stream = stream
        self._name = name
        self._outputs = outputs

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if isinstance(text, str):
            self._outputs.stream(self._name, text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def capture(shell: Any, outputs: LiveOutputs) -> Iterator[None]:
    """Tee the cell's streams and displays into ``outputs`` while they show as usual."""
    stdout, stderr = sys.stdout, sys.stderr
    out, err = _Tee(stdout, "stdout", outputs), _Tee(stderr, "stderr", outputs)
    pub = shell.display_pub
    own = {name: pub.__dict__.get(name) for name in ("publish", "clear_output")}
    publish, clear_output = pub.publish, pub.clear_output

    def teed_publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        shown = publish(data, metadata, *args, **kwargs)
        try:
            transient = kwargs.get("transient") or {}
            display_id = transient.get("display_id") if isinstance(transient, dict) else None
            outputs.display(data, display_id, bool(kwargs.get("update")))
        except Exception:  # a display the capture cannot read still shows
            log.debug("live cell: display not captured", exc_info=True)
        return shown

    def teed_clear_output(wait: bool = False) -> Any:
        cleared = clear_output(wait)
        outputs.clear(bool(wait))
        return cleared

    sys.stdout = out
    sys.stderr = err
    pub.publish, pub.clear_output = teed_publish, teed_clear_output
    try:
        yield
    finally:
        if sys.stdout is out:
            sys.stdout = stdout
        if sys.stderr is err:
            sys.stderr = stderr
        for name, method in own.items():
            if method is None:
                pub.__dict__.pop(name, None)
            else:
                setattr(pub, name, method)


class ResultHook:
    """``sys.displayhook`` while the cell runs: keeps its result for the magic to return."""

    value: Any = None

    def __call__(self, value: Any = None) -> None:
        if value is not None:
            self.value = value


@contextmanager
def held_tracebacks(shell: Any) -> Iterator[list[tuple[type, BaseException, list[str]]]]:
    """Tracebacks the cell would show, held back (the magic shows them)."""
    held: list[tuple[type, BaseException, list[str]]] = []
    own = shell.__dict__.get("_showtraceback")

    def hold(etype: type, value: BaseException, stb: list[str]) -> None:
        held.append((etype, value, stb))

    shell._showtraceback = hold
    try:
        yield held
    finally:
        if own is None:
            shell.__dict__.pop("_showtraceback", None)
        else:
            shell._showtraceback = own
