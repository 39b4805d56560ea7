"""``ChannelWidget``: a topic's live feed, who is here and an input box, in a notebook.

::

    from jupyter_channels import ChannelWidget

    w = ChannelWidget("chat:lobby")
    w                                   # shows it; the page joins the topic
    w.send("text", {"text": "hi"})      # from the kernel -> offset
    w.on("text", lambda msg: print(msg.payload))
    w.messages, w.members
    w.topic = "chat:other"              # every view rejoins on the new topic

Two sides, each with its own WebSocket:

- The browser side (``js/widget.js``, built into ``static/``) connects from the
  widget model's ``initialize`` with the page's own Jupyter login (one socket per
  page, shared by every widget) and works while the kernel is busy. Outside a
  Jupyter page, for a widget given a ``url``, and when the Jupyter server points
  at a channels service (``$JUPYTER_CHANNELS_SERVICE_URL``), it asks this side for
  an endpoint through a custom message (so a token is never written into the
  saved widget state); the answer carries the kernel token, the service token or
  the widget's own, never the Jupyter server's. Under JupyterHub it carries no
  token but the service's login path: the page connects on its own origin
  (through the hub's proxy) after signing in with the hub's OAuth.
- The kernel side (``send``, ``on``, ``messages``, ``members``) is the Python client
  on a connection of its own, opened and joined on first use; from then on the
  kernel is one of the members (user ``kernel``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any, TypeVar

try:
    import anywidget
except ImportError as e:  # pragma: no cover - a dependency, missing only from a broken install
    raise ImportError(
        "jupyter_channels.ChannelWidget needs anywidget, a dependency of jupyter-channels "
        "missing from this environment: pip install anywidget"
    ) from e
import traitlets

from . import sharing
from .client import ChannelError, Subscription, resolve
from .client.aio import Callback
from .client.discovery import Endpoint, hub_login_path
from .constants import DEFAULT_HISTORY_LIMIT, ENV_SERVICE_URL, ENV_TOKEN, TOPIC_RE
from .kernel_relay import SharedConnection, shared_connection
from .message import Message
from .protocol import JSON

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callback)

_STATIC = Path(__file__).parent / "static"
if not (_STATIC / "widget.js").is_file():  # pragma: no cover - the install builds it
    raise ImportError(
        f"the ChannelWidget front end is not built ({_STATIC / 'widget.js'} is missing): "
        "reinstall the package (pip runs `npm run build` through hatch-jupyter-builder), "
        "or run `npm ci && npm run build` in a source checkout"
    )

#: Messages the widget shows on joining a topic (and the kernel side has on first use).
HISTORY_ON_JOIN = DEFAULT_HISTORY_LIMIT
#: The custom messages of the front end: an endpoint, the recent inputs, share one.
_ENDPOINT = "endpoint"
_INPUTS = "inputs"
_SHARE = "share"
_RELAY = "relay"
#: How the page reaches the channels: ``direct`` (its own WebSocket), ``kernel`` (relayed
#: through this side's connection), ``auto`` (direct when the page can, else kernel).
TRANSPORTS = ("auto", "direct", "kernel")
#: Recent inputs the "Share a cell" control offers.
RECENT_INPUTS = 10

#: Live widgets: ``%channels paste`` takes cells from their topics too.
WIDGETS: weakref.WeakSet[ChannelWidget] = weakref.WeakSet()
#: The widgets each notebook cell (by its ``cellId``) made in its last run, by that run's
#: request id: running the cell again closes them, so re-runs leak nothing.
_MADE_BY_CELL: dict[str, tuple[str, list[weakref.ref[ChannelWidget]]]] = {}


def _cell_run() -> tuple[str, str] | None:
    """The notebook cell running now and its execute request's id, when a front end
    that names cells (JupyterLab, Notebook 7) runs this kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    parent = kernel.get_parent() if kernel is not None else None
    if not isinstance(parent, dict):
        return None
    cell = (parent.get("metadata") or {}).get("cellId")
    run = (parent.get("header") or {}).get("msg_id")
    if not isinstance(cell, str) or not isinstance(run, str) or not cell or not run:
        return None
    return cell, run


class ChannelWidget(anywidget.AnyWidget):
    """A live view of ``topic``: header (topic, connection state, who is here), the
    feed (text, shared cells as code with Copy, other subjects as JSON), an input box.

    ``url`` / ``token`` pick the server (or service) for both sides; by default the
    kernel side discovers it as ``jc.connect()`` does, and the browser side uses
    its Jupyter page's endpoint and login. ``transport``: ``"direct"`` (the page's own
    WebSocket), ``"kernel"`` (every frame relayed through this kernel's connection) or
    ``"auto"`` (direct when the page reaches an endpoint, else kernel).
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    topic = traitlets.Unicode(help="The topic shown; set it to switch topics.").tag(sync=True)
    #: Whether the page asks this side for its endpoint even inside a Jupyter page: the
    #: channels are not the page's own server's.
    _endpoint_from_kernel = traitlets.Bool(False).tag(sync=True)
    #: The page's key for this widget's live state, the same for every view of it.
    _room = traitlets.Unicode().tag(sync=True)
    transport = traitlets.Unicode(
        "auto", help='How the page reaches the channels: "auto", "direct" or "kernel".'
    ).tag(sync=True)

    def __init__(
        self,
        topic: str,
        *,
        url: str | None = None,
        token: str | None = None,
        transport: str = "auto",
        **kwargs: Any,
    ) -> None:
        self._url = url
        self._token = token
        self._shared: SharedConnection | None = None
        self._sub: Subscription | None = None
        self._handlers: list[tuple[str, Callback]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._lock = threading.RLock()
        elsewhere = bool(url or os.environ.get(ENV_SERVICE_URL))
        super().__init__(
            topic=topic,
            transport=transport,
            _room=uuid.uuid4().hex,
            _endpoint_from_kernel=elsewhere,
            **kwargs,
        )
        self.on_msg(self._on_custom_message)
        WIDGETS.add(self)
        self._replace_earlier_run()

    def _replace_earlier_run(self) -> None:
        """Close the widgets an earlier run of this cell made: their output is gone."""
        where = _cell_run()
        if where is None:
            return
        cell, run = where
        made = _MADE_BY_CELL.get(cell)
        if made is not None and made[0] != run:
            for ref in made[1]:
                widget = ref()
                if widget is not None and widget.comm is not None:
                    widget.close()
            made = None
        if made is None:
            made = _MADE_BY_CELL[cell] = (run, [])
        made[1].append(weakref.ref(self))

    @traitlets.validate("topic")
    def _check_topic(self, proposal: Any) -> str:
        topic = proposal["value"]
        if not isinstance(topic, str) or not TOPIC_RE.match(topic):
            raise traitlets.TraitError(
                f"invalid topic {topic!r}: 1-255 characters of A-Z a-z 0-9 _ . : @ / + -"
            )
        return topic

    @traitlets.validate("transport")
    def _check_transport(self, proposal: Any) -> str:
        transport = proposal["value"]
        if transport not in TRANSPORTS:
            raise traitlets.TraitError(
                f"invalid transport {transport!r}: one of {', '.join(map(repr, TRANSPORTS))}"
            )
        return str(transport)

    # -- the kernel side ----------------------------------------------------------------------

    def send(
        self, subject: str, payload: JSON = None, *, timeout: float | None = None
    ) -> int | None:
        """Send a message into the topic from the kernel; returns its offset once stored.

        Raises ``ChannelError`` (an error reply, ``ReplyTimeout``, ``ConnectionLost``).
        """
        if isinstance(subject, dict):
            # ipywidgets' own custom messages (DOMWidget.focus/blur) keep working.
            super().send(subject, payload)
            return None
        return self._subscription().send(subject, payload, timeout=timeout)

    def on(self, subject: str, callback: F | None = None) -> Any:
        """Call ``callback(message)`` for each message with ``subject`` (``"*"``: every
        one), on the client's thread (so also while a cell runs). Usable as a decorator.
        Callbacks follow the widget to a new topic."""

        def register(fn: F) -> F:
            with self._lock:
                self._handlers.append((subject, fn))
                if self._sub is None:
                    self._subscription()  # joins, and registers every handler
                else:
                    self._sub.on(subject, fn)
            return fn

        return register if callback is None else register(callback)

    @property
    def messages(self) -> list[Message]:
        """The topic's recent messages, oldest first: the last 50 before the kernel side
        joined, then every one received."""
        return self._subscription().messages

    @property
    def members(self) -> dict[str, list[dict[str, Any]]]:
        """Who is here: username -> one presence meta per connection."""
        return self._subscription().members

    def _connection(self) -> SharedConnection:
        """The kernel's connection for this widget's endpoint, shared by every widget."""
        with self._lock:
            if self._shared is None or self._shared.state == "closed":
                self._shared = shared_connection(self._url, self._token)
            return self._shared

    def _subscription(self) -> Subscription:
        with self._lock:
            sub = self._sub
            if sub is None or not sub.joined:
                shared = self._connection()
                asub = shared.call(shared.acquire(self.topic, self))
                asub.off(self._deliver)
                asub.on("*", self._deliver)
                sub = self._sub = Subscription(shared.conn, asub)
            return sub

    def _deliver(self, message: Message) -> None:
        """The topic's messages to this widget's callbacks (on the client's thread)."""
        for subject, callback in list(self._handlers):
            if subject not in ("*", message.subject):
                continue
            try:
                result = callback(message)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("callback %r failed on %s", callback, message)

    def _release(self) -> None:
        """Let go of the kernel side's topic (left once nothing else of the kernel holds it)."""
        with self._lock:
            old, self._sub = self._sub, None
        shared = self._shared
        if old is None or shared is None:
            return
        old._sub.off(self._deliver)
        try:
            shared.call(shared.release(old.topic, self))
        except (ChannelError, RuntimeError) as e:
            # RuntimeError: from the client's own thread (a callback): it is left with the
            # connection.
            log.warning("leaving %s failed: %s", old.topic, e)

    @traitlets.observe("topic")
    def _topic_changed(self, change: Any) -> None:
        with self._lock:
            if self._sub is None:
                return
            self._release()
            if self._handlers:
                self._subscription()  # the callbacks keep firing, on the new topic

    def close(self) -> None:
        """Close the views, leave this widget's topics and drop its pages' relay links
        (the kernel's shared connection stays, for the other widgets)."""
        self._release()
        shared = self._shared
        if shared is not None:
            try:
                shared.close_links_of(self)
            except (ChannelError, RuntimeError) as e:
                log.debug("closing the widget's relay links: %s", e)
        super().close()

    # -- sharing cells -------------------------------------------------------------------------

    def share_cell(
        self,
        source: str | None = None,
        *,
        execution_count: int | None = None,
        outputs: list[dict[str, Any]] | None = None,
    ) -> int:
        """Share a cell into the topic; returns its offset.

        Without ``source``, the previous input of this kernel and its result. A
        ``source`` given is shared as it is, with the ``outputs`` given (nbformat's
        shapes, limited to stream text, ``text/plain`` and ``image/png``).
        """
        if source is None:
            from .magics import input_cell

            payload = input_cell(None)
        else:
            kept = [sharing.shared_output(o) for o in outputs or []]
            payload = sharing.cell_payload(source, execution_count=execution_count, outputs=kept)
        return self._subscription().send(sharing.SUBJECT, payload)

    def insert(self, k: int = 1) -> str | None:
        """Put the ``k``-th most recent cell shared in this topic into a new cell below
        the current one (not run); returns its source."""
        from .magics import paste

        return paste(k, cells=[m for m in self.messages if m.subject == sharing.SUBJECT])

    # -- the browser side's questions ---------------------------------------------------------

    def _on_custom_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == _RELAY:
            self._relay(content)
            return
        if kind == _INPUTS:
            self._send_inputs()
            return
        if kind == _SHARE:
            self._share_input(content.get("n"))
            return
        if kind != _ENDPOINT:
            return
        try:
            endpoint = resolve(self._url, self._token)
        except (ChannelError, ValueError) as e:
            super().send({"kind": _ENDPOINT, "error": str(e)})
            return
        answer = {"kind": _ENDPOINT, "url": endpoint.url, "token": self._page_token(endpoint)}
        login = hub_login_path(endpoint)
        if login is not None:
            answer["login"] = login
        super().send(answer)

    def _relay(self, content: dict[str, Any]) -> None:
        """A page's relay message: acknowledged at once (the page sees the kernel is not
        busy), then handed to the kernel's shared connection."""
        link, op = content.get("link"), content.get("op")
        if not isinstance(link, str) or op not in ("open", "close", "frames"):
            return
        super().send({"kind": _RELAY, "link": link, "op": "ack", "seq": content.get("seq")})
        if op == "open":
            try:
                self._connection()
            except (ChannelError, ValueError) as e:
                super().send({"kind": _RELAY, "link": link, "op": "close", "reason": str(e)})
                return
        shared = self._shared
        if shared is None:
            return
        texts = content.get("texts")
        texts = [t for t in texts if isinstance(t, str)] if isinstance(texts, list) else []
        shared.receive(link, op, texts, self._relay_send, self)

    def _relay_send(self, message: dict[str, Any]) -> None:
        """To the page, from the connection's thread (a comm message goes out on IOPub,
        also while a cell runs)."""
        super().send(message)

    def _page_token(self, endpoint: Endpoint) -> str:
        """The token the page may connect with: one given to this widget, or the kernel
        token the server exported (it opens the channels endpoint only). Never the
        Jupyter server token discovery reads from a runtime file: it opens the whole
        server (kernels, files, terminals) to whatever script runs in the page; without
        a channels token the page connects with its own login."""
        token = endpoint.token
        if token and (self._url or token in (self._token, os.environ.get(ENV_TOKEN))):
            return token
        return ""

    def _send_inputs(self) -> None:
        cells = _marimo_cells()
        if cells is not None:
            found = [(n, source) for n, (source, _) in cells.items()][-RECENT_INPUTS:]
        else:
            from .magics import recent_inputs

            found = recent_inputs(RECENT_INPUTS)
        inputs = [{"n": n, "source": source} for n, source in found]
        super().send({"kind": _INPUTS, "inputs": inputs})

    def _share_input(self, n: object) -> None:
        from .magics import input_cell

        if not isinstance(n, int) or isinstance(n, bool):
            return
        try:
            cells = _marimo_cells()
            if cells is None:
                payload = input_cell(n)
            elif n in cells:
                payload = _marimo_cell_payload(*cells[n])
            else:
                raise IndexError(f"no cell {n}")
            self._subscription().send(sharing.SUBJECT, payload)
            super().send({"kind": _SHARE, "n": n})
        except (ChannelError, IndexError) as e:
            super().send({"kind": _SHARE, "n": n, "error": str(e)})


def _marimo_cells() -> dict[int, tuple[str, Any]] | None:
    """In a marimo notebook: its cells in notebook order (from 1), each ``(source as
    typed, its last output or None)``; ``None`` elsewhere."""
    if "marimo" not in sys.modules:
        return None
    try:
        from marimo._runtime.context import safe_get_context

        ctx = safe_get_context()
        if ctx is None:
            return None
        cells = list(ctx.graph.cells.values())
        found = [(cell.code, getattr(cell._output, "output", None)) for cell in cells]
    except (ImportError, AttributeError) as e:  # a marimo whose internals moved
        log.debug("cannot list marimo's cells: %s", e)
        return None
    return {n: cell for n, cell in enumerate(found, 1) if cell[0].strip()}


def _marimo_cell_payload(source: str, output: Any) -> dict[str, Any]:
    """A marimo cell as a ``cell`` payload: its source, and its output as text (marimo
    keeps the output object; what it shows is its own rendering)."""
    outputs = []
    if output is not None:
        outputs.append(sharing.execute_result({"text/plain": repr(output)}, None))
    return sharing.cell_payload(source, outputs=outputs)
