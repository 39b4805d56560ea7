"""IPython magics: share cells into a topic, and take shared cells into the notebook.

::

    %load_ext jupyter_channels

    %%share chat:lobby          # runs the cell as usual, then shares its code and outputs
    %%share --live chat:lobby   # shares it as it runs: its outputs as they appear, then its end
    %share chat:lobby 12        # shares input 12 (default: the previous cell)
    %channels paste [K]         # the K-th most recent shared cell received, in a new cell below

Nothing received is ever executed: ``paste`` only puts the source into a new
cell (IPython's ``set_next_input``), where the user decides.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from IPython.core.displayhook import CapturingDisplayHook
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.utils.capture import capture_output

from . import live, sharing
from .client import sync
from .message import Message

#: IPython's name for input ``n`` as typed (not ``_i``, ``_ii``, ``_iii``: the last three).
_INPUT_NAME = re.compile(r"_i[1-9][0-9]*")


class _ResultHook(CapturingDisplayHook):
    """Captures the cell's result like ``%%capture`` does, and keeps the value itself."""

    value: Any = None

    def __call__(self, result: Any = None) -> None:
        if result is not None:
            self.value = result
        super().__call__(result)


def _format(shell: Any, value: Any) -> dict[str, Any]:
    """The mime bundle IPython would show for ``value``."""
    data, _ = shell.display_formatter.format(value)
    return dict(data)


def _shell() -> Any:
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("not in an IPython kernel")
    return shell


def typed_inputs() -> dict[int, str]:
    """This kernel's inputs as typed, by execution count.

    Not ``In``: it holds the code IPython runs (``%time x`` becomes
    ``get_ipython().run_line_magic(...)``), and it is a list that skips the cells
    IPython numbers but does not store (a line magic in a cell that says ``paste``,
    so ``%channels paste``; ``exit``), after which ``In[n]`` is no longer cell ``n``.
    IPython also sets ``_i<n>`` to cell ``n``'s raw input, keyed by its number.
    """
    inputs: dict[int, str] = {}
    for name, value in _shell().user_ns.items():
        if _INPUT_NAME.fullmatch(name) and isinstance(value, str):
            inputs[int(name[2:])] = value
    return inputs


def recent_inputs(limit: int) -> list[tuple[int, str]]:
    """The newest ``limit`` inputs of this kernel, ``(n, source)``, oldest first.

    Asked between cells (the widget's "Share a cell" control), so every input has run.
    """
    found = sorted((n, source) for n, source in typed_inputs().items() if source.strip())
    return found[-limit:]


def input_cell(n: int | None) -> dict[str, Any]:
    """The ``cell`` payload of input ``n`` (default: the previous cell) with its result.

    Raises ``IndexError`` if there is no such input.
    """
    shell = _shell()
    inputs = typed_inputs()
    if n is None:
        running = shell.execution_count - 1  # IPython numbers a cell before running it
        n = max((k for k in inputs if k < running), default=0)
    if n not in inputs:
        raise IndexError(f"no input {n}")
    outputs = []
    value = shell.user_ns.get("Out", {}).get(n)
    if value is not None:
        outputs.append(sharing.execute_result(_format(shell, value), n))
    return sharing.cell_payload(inputs[n], execution_count=n, outputs=outputs)


def received_cells() -> list[Message]:
    """Every ``cell`` message this kernel has on its topics (the shared connection's and
    every live ``ChannelWidget``'s), oldest first."""
    cells: dict[tuple[str, int | None, int | None], Message] = {}
    conn = sync.existing_default_connection()
    found = [] if conn is None else conn.recent(sharing.SUBJECT)
    if "jupyter_channels.widget" in sys.modules:
        from .widget import WIDGETS

        for widget in list(WIDGETS):
            found += [m for m in widget.messages if m.subject == sharing.SUBJECT]
    for message in found:  # one topic seen through two connections counts once
        cells[(message.topic, message.offset, message.ts)] = message
    return sorted(cells.values(), key=lambda m: m.ts or 0)


def share(topic: str, payload: dict[str, Any]) -> int:
    """Send a ``cell`` message to ``topic`` (joining it on the shared connection)."""
    return sync.join(topic).send(sharing.SUBJECT, payload)


@magics_class
class ChannelsMagics(Magics):
    """``%%share``, ``%share`` and ``%channels``."""

    @line_cell_magic
    def share(self, line: str, cell: str | None = None) -> Any:
        """``%%share TOPIC``: run the cell, then share its code and outputs to TOPIC.
        ``%%share --live TOPIC``: share it while it runs, its outputs as they appear.
        ``%share TOPIC [N]``: share input N (default: the previous cell)."""
        args = line.split()
        is_live = "--live" in args
        args = [arg for arg in args if arg != "--live"]
        if not args or (is_live and (cell is None or len(args) != 1)):
            print("usage: %%share [--live] TOPIC  |  %share TOPIC [N]", file=sys.stderr)
            return None
        topic = args[0]
        if cell is None:
            return self._share_input(topic, args[1:])
        if is_live:
            shell = self.shell
            assert shell is not None
            return live.run_live(
                shell,
                topic,
                cell,
                execution_count=shell.execution_count - 1,
                bundle=lambda value: _format(shell, value),
            )
        return self._share_cell(topic, cell)

    def _share_cell(self, topic: str, cell: str) -> Any:
        shell = self.shell
        assert shell is not None
        # IPython numbers a cell before running it: this cell is the one before the counter.
        count = shell.execution_count - 1
        hook = _ResultHook(shell=shell)
        with capture_output(display=True) as captured:
            sys.displayhook = hook  # restored by capture_output
            result = shell.run_cell(cell, store_history=False)
        captured.show()  # the user sees streams and displays as usual
        if not result.success:
            print(f"not shared: the cell raised (topic {topic})", file=sys.stderr)
            return None
        outputs: list[dict[str, Any] | None] = []
        if captured.stdout:
            outputs.append(sharing.stream("stdout", captured.stdout))
        if captured.stderr:
            outputs.append(sharing.stream("stderr", captured.stderr))
        outputs += [sharing.display_data(output.data) for output in captured.outputs]
        if hook.value is not None:
            outputs.append(sharing.execute_result(_format(shell, hook.value), count))
        share(topic, sharing.cell_payload(cell, execution_count=count, outputs=outputs))
        return hook.value  # shown as this cell's Out, as without the magic

    def _share_input(self, topic: str, rest: list[str]) -> None:
        try:
            n = int(rest[0]) if rest else None
            payload = input_cell(n)
        except (ValueError, IndexError):
            print(f"no input {rest[0] if rest else 'before this one'} to share", file=sys.stderr)
            return
        share(topic, payload)

    @line_magic
    def channels(self, line: str) -> None:
        """``%channels paste [K]``: put the K-th most recent shared cell received into a
        new cell below this one. It is not run."""
        words = line.split()
        if (
            not words
            or words[0] != "paste"
            or len(words) > 2
            or not all(w.isdigit() for w in words[1:])
        ):
            print("usage: %channels paste [K]", file=sys.stderr)
            return
        paste(int(words[1]) if len(words) == 2 else 1)


def paste(k: int = 1, cells: list[Message] | None = None) -> str | None:
    """Put the ``k``-th most recent received cell's source in a new cell below; returns it."""
    from IPython import get_ipython

    cells = received_cells() if cells is None else cells
    if not cells:
        print(
            "no shared cell received yet: join a topic first "
            "(jupyter_channels.ChannelWidget(...) or jupyter_channels.join(...))",
            file=sys.stderr,
        )
        return None
    if not 1 <= k <= len(cells):
        print(f"only {len(cells)} shared cells received", file=sys.stderr)
        return None
    source = str(cells[-k].payload.get("source", ""))
    shell = get_ipython()
    if shell is not None:
        shell.set_next_input(source, replace=False)
    return source


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(ChannelsMagics)
