"""Live shared cells: a cell's outputs captured as they appear and sent to a topic
while it runs (``%%share --live TOPIC``).

- :class:`LiveOutputs` keeps a running cell's outputs as a Jupyter front end does:
  consecutive stream text of one name is one output (a ``\\r`` overwrites its line, so
  a progress bar is one line), ``update_display`` replaces the data of the displays
  with its ``display_id``, ``clear_output(wait=True)`` clears at the next output.
  No I/O; the kernel's thread writes, the sender's thread reads.
- ``capture.py`` tees ``sys.stdout``, ``sys.stderr`` and IPython's display publisher
  into it: the notebook still shows everything as usual.
- :class:`LiveSender` sends the state from its own thread: at once when the cell starts,
  then at most once per ``interval`` (0.1 s) while it changes, as ephemeral frames
  (status ``running``), then the final state (``ok`` or ``error``) as the one stored
  message. The cell never waits for a send, and a failed send only costs an update.
- :func:`run_live` runs a cell that way.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import sharing
from .capture import ResultHook, capture, held_tracebacks

log = logging.getLogger(__name__)

#: The shortest time between two updates of one live cell (at most 10 a second).
INTERVAL = 0.1
#: How long a running update may wait for the server's ack.
UPDATE_TIMEOUT = 5.0
#: How long the final state may wait for the server's ack.
FINAL_TIMEOUT = 10.0
#: How long the end of a live cell waits for its final state to be acked before the
#: cell returns (the send goes on behind it).
FINAL_WAIT = 3.0

Send = Callable[[dict[str, Any], bool], object]


def overwrite_line(line: str) -> str:
    """A line as a terminal shows it: a ``\\r`` returns to its start and what follows
    overwrites it. A trailing ``\\r`` stays, for the next write to overwrite."""
    if "\r" not in line:
        return line
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part) :]
    return shown + "\r" if line.endswith("\r") else shown


class _Stream:
    """The text of one stream output: its finished lines, and the line being written.

    Finished lines never change again, so once they alone are over the size cap the
    output can never be shared: their text is dropped, their size kept.
    """

    __slots__ = ("done", "done_size", "line", "line_size", "name", "returning")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done: list[str] = []
        self.done_size = 0
        #: The line being written, in pieces: no ``\\r`` in it but a trailing one.
        self.line: list[str] = []
        self.line_size = 0
        #: Whether the line ends with ``\\r``: the next write overwrites it.
        self.returning = False

    @property
    def size(self) -> int:
        return self.done_size + self.line_size

    def write(self, text: str) -> None:
        if "\r" in text or self.returning:
            *finished, last = "".join([*self.line, text]).split("\n")
            lines = [overwrite_line(line).removesuffix("\r") + "\n" for line in finished]
            last = overwrite_line(last)
            self.returning = last.endswith("\r")
        elif "\n" in text:
            head, _, last = text.rpartition("\n")
            lines = ["".join([*self.line, head, "\n"])]
        else:  # the common case: more of the line
            self.line.append(text)
            self.line_size += len(text)
            return
        self.line, self.line_size = [last], len(last)
        self.done += lines
        self.done_size += sum(len(line) for line in lines)
        if self.done_size > sharing.MAX_CELL_BYTES:
            self.done = []

    def output(self) -> dict[str, Any]:
        done = "".join(self.done)
        self.done = [done]
        return sharing.stream(self.name, done + "".join(self.line).removesuffix("\r"))


class _Output:
    """A display (with its ``display_id``, if any), a result or an error."""

    __slots__ = ("display_id", "output", "size")

    def __init__(self, output: dict[str, Any] | None, display_id: str | None = None) -> None:
        self.display_id = display_id
        self.set(output)

    def set(self, output: dict[str, Any] | None) -> None:
        self.output = output
        data = output.get("data", {}) if output else {}
        self.size = sum(len(value) for value in data.values())


class LiveOutputs:
    """A running cell's outputs, as a Jupyter front end keeps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[_Stream | _Output] = []
        self._clear_next = False
        #: Set at each change; whoever reads the outputs clears it first.
        self.changed = threading.Event()

    def _changed(self) -> None:
        # Reading the flag is much cheaper than setting it, and a tight loop of prints
        # finds it set nearly always. No change is lost: a reader clears it, then reads.
        if not self.changed.is_set():
            self.changed.set()

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self._clear_next:
                self._take_pending_clear()
            last = self._records[-1] if self._records else None
            if not isinstance(last, _Stream) or last.name != name:
                last = _Stream(name)
                self._records.append(last)
            last.write(text)
        if not self.changed.is_set():
            self.changed.set()

    def display(self, data: Mapping[str, Any], display_id: str | None, update: bool) -> None:
        """A ``display_data`` (``update``: the new data of the displays with ``display_id``)."""
        output = sharing.display_data(data)
        with self._lock:
            if update:
                targets = [
                    r
                    for r in self._records
                    if isinstance(r, _Output) and r.display_id == display_id
                ]
                if not targets:
                    return  # a display of another cell: not part of this one
                for record in targets:
                    record.set(output)
            else:
                self._take_pending_clear()
                self._records.append(_Output(output, display_id))
        self._changed()

    def clear(self, wait: bool) -> None:
        """``clear_output``: now, or (``wait``) when the next output comes."""
        with self._lock:
            if wait:
                self._clear_next = True
            else:
                self._records = []
                self._clear_next = False
        self._changed()

    def add(self, output: dict[str, Any] | None) -> None:
        """An output the cell ends with: its result, or its error."""
        with self._lock:
            self._take_pending_clear()
            self._records.append(_Output(output))
        self._changed()

    def _take_pending_clear(self) -> None:
        if self._clear_next:
            self._records = []
            self._clear_next = False

    def snapshot(self) -> tuple[list[dict[str, Any]] | None, int]:
        """The outputs now and the length of their text; ``None`` for the outputs when
        that length alone is over ``sharing.MAX_CELL_BYTES`` (they cannot be shared)."""
        with self._lock:
            size = sum(record.size for record in self._records)
            if size > sharing.MAX_CELL_BYTES:
                return None, size
            outputs: list[dict[str, Any]] = []
            for record in self._records:
                output = record.output() if isinstance(record, _Stream) else record.output
                if output is not None:
                    outputs.append(output)
            return outputs, size


class LiveSender:
    """Sends a live cell's states through ``send(payload, ephemeral)`` on its own thread.

    ``start()`` sends the first state at once; each change of ``outputs`` is sent at
    most ``interval`` after the previous update (the newest state, never a queue of
    them); ``finish(status)`` sends the final state, after every update.
    """

    def __init__(
        self,
        send: Send,
        outputs: LiveOutputs,
        source: str,
        *,
        execution_count: int | None = None,
        interval: float = INTERVAL,
    ) -> None:
        self._send = send
        self.outputs = outputs
        self.source = source
        self.execution_count = execution_count
        self.interval = interval
        #: The ``id`` of every frame of this run.
        self.id = uuid.uuid4().hex
        #: Why an update or the final state could not be sent (the first reason).
        self.failure: str | None = None
        #: The running updates sent and acked.
        self.updates = 0
        self._status: str | None = None
        self._wake = outputs.changed
        self._finishing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jupyter-channels-live", daemon=True)

    def start(self) -> None:
        self._wake.set()
        self._thread.start()

    def finish(self, status: str, wait: float = FINAL_WAIT) -> bool:
        """Send the final state (``ok`` or ``error``); whether it was sent within ``wait``."""
        self._status = status
        self._finishing.set()
        self._wake.set()
        self._thread.join(wait)
        return not self._thread.is_alive()

    def payload(self, status: str) -> dict[str, Any]:
        """The ``cell`` payload of the current state."""
        outputs, size = self.outputs.snapshot()
        payload = sharing.cell_payload(
            self.source,
            execution_count=self.execution_count,
            outputs=outputs or (),
            share_id=self.id,
            status=status,
        )
        if outputs is None:
            sharing.too_large(payload, size)
        payload.setdefault("outputs", [])
        return payload

    def _run(self) -> None:
        last: float | None = None
        while True:
            self._wake.wait()
            if last is not None:
                # The throttle: an update at most one interval after the previous one;
                # finishing cuts the wait short (the final state has every change).
                self._finishing.wait(last + self.interval - time.monotonic())
            self._wake.clear()  # before reading: a change from now on wakes us again
            if self._status is not None:
                break
            last = time.monotonic()
            if self._deliver(self.payload("running"), ephemeral=True):
                self.updates += 1
        self._deliver(self.payload(str(self._status)), ephemeral=False)

    def _deliver(self, payload: dict[str, Any], *, ephemeral: bool) -> bool:
        try:
            self._send(payload, ephemeral)
        except Exception as e:  # any failure costs an update, never the cell
            log.debug("live cell %s: %s send failed", self.id, payload["status"], exc_info=True)
            if self.failure is None:
                self.failure = f"{type(e).__name__}: {e}"
            return False
        return True


def _warn(topic: str, text: str) -> None:
    print(f"live share to {topic}: {text}", file=sys.stderr)


def connect(topic: str) -> Send:
    """How a live cell sends to ``topic``: the process's shared connection (joined now)."""
    from .client import sync

    subscription = sync.join(topic)

    def send(payload: dict[str, Any], ephemeral: bool) -> object:
        timeout = UPDATE_TIMEOUT if ephemeral else FINAL_TIMEOUT
        return subscription.send(sharing.SUBJECT, payload, ephemeral=ephemeral, timeout=timeout)

    return send


def run_live(
    shell: Any,
    topic: str,
    cell: str,
    *,
    execution_count: int | None,
    bundle: Callable[[Any], Mapping[str, Any]],
    connect: Callable[[str], Send] = connect,
) -> Any:
    """Run ``cell`` in ``shell``, sharing it live to ``topic``; returns the cell's result
    (``bundle(value)`` is its mime bundle). Without a server the cell runs unshared.

    An exception in the cell propagates with its usual traceback, after the final state.
    """
    outputs = LiveOutputs()
    sender: LiveSender | None = None
    try:
        sender = LiveSender(connect(topic), outputs, cell, execution_count=execution_count)
    except Exception as e:  # no server: the cell runs, unshared
        _warn(topic, f"not shared ({type(e).__name__}: {e})")
    else:
        sender.start()
    result = ResultHook()
    displayhook = sys.displayhook
    with capture(shell, outputs), held_tracebacks(shell) as held:
        sys.displayhook = result
        try:
            ran = shell.run_cell(cell, store_history=False)
        finally:
            sys.displayhook = displayhook
    error: BaseException | None = ran.error_before_exec or ran.error_in_exec
    if error is not None:
        stb = held[-1][2] if held else []
        outputs.add(sharing.error(type(error).__name__, str(error), stb))
    elif result.value is not None:
        outputs.add(sharing.execute_result(bundle(result.value), execution_count))
    if sender is not None:
        if not sender.finish("ok" if error is None else "error"):
            _warn(topic, "the final state is still being sent")
        if sender.failure is not None:
            _warn(topic, f"not every update was sent ({sender.failure})")
    if error is None or not held:
        for shown in held:  # tracebacks the cell showed itself, and went on
            shell._showtraceback(*shown)
        return result.value
    for shown in held[:-1]:
        shell._showtraceback(*shown)
    stb = held[-1][2]
    try:
        # The notebook shows the cell's own traceback, as without the magic.
        error._render_traceback_ = lambda: stb  # type: ignore[attr-defined]
    except AttributeError:
        shell._showtraceback(*held[-1])
        return None
    raise error
