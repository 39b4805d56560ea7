"""ChannelWidget in marimo (``marimo edit`` and ``marimo run``), in real Chromium: marimo
renders the anywidget natively (inside shadow DOM) and runs no Jupyter server, so the
widget relays through its marimo kernel to the channels of a running JupyterLab; a
JupyterLab page on the same topic and the marimo notebook chat both ways and see each
other, and a marimo cell is shared as typed.

marimo (its ``edit`` and ``run`` servers) comes from PyPI, in the ``test`` extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_channels.client.discovery import websocket_url
from jupyter_channels.constants import ENV_TOKEN, ENV_URL

from ..support import free_port, stop_process
from .conftest import PAGE_TIMEOUT, REPO_ROOT, WIDGET_TIMEOUT, Lab, OpenNotebook
from .test_browser import expect, feed, say, wait_until

TOPIC = "marimo:chat"

NOTEBOOK = """\
import marimo

app = marimo.App()


@app.cell
def _():
    from jupyter_channels import ChannelWidget

    w = ChannelWidget(TOPIC, transport=TRANSPORT)
    w
    return (w,)


@app.cell
def _():
    squares = [n * n for n in range(4)]  # typed in marimo
    squares
    return (squares,)


if __name__ == "__main__":
    app.run()
"""


class Marimo:
    """``marimo edit`` or ``marimo run`` of one notebook, its kernels pointed at ``lab``."""

    def __init__(self, root: Path, mode: str, lab: Lab) -> None:
        self.root = root
        self.mode = mode
        self.lab = lab
        self.port = free_port()
        self.path = root / f"{mode}_notebook.py"
        self.log_path = root / f"marimo-{mode}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, topic: str, transport: str, timeout: float = 90) -> Marimo:
        notebook = NOTEBOOK.replace("TOPIC", repr(topic)).replace("TRANSPORT", repr(transport))
        self.path.write_text(notebook)
        # `marimo edit` runs the notebook when it opens, as `marimo run` does.
        (self.root / ".marimo.toml").write_text("[runtime]\nauto_instantiate = true\n")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.getenv("PYTHONPATH")])),
            ENV_URL: websocket_url(self.lab.url),
            ENV_TOKEN: self.lab.token,
            "HOME": str(self.root),  # marimo's own config and state stay here
        }
        args = [
            sys.executable, "-m", "marimo", "-y", self.mode, str(self.path),
            "--headless", "--no-token", "--port", str(self.port), "--host", "127.0.0.1",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"marimo exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "health", timeout=5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"marimo did not start: {self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def marimo(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Marimo] = []

    def start(mode: str, topic: str, transport: str) -> Marimo:
        server = Marimo(tmp_path, mode, lab).start(topic, transport)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def marimo_widget(browser: Any, server: Marimo, transport: str) -> Any:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WIDGET_TIMEOUT)
    page = context.new_page()
    page.goto(server.url, timeout=PAGE_TIMEOUT)
    widget = page.locator(".jc-widget")
    expect(widget).to_have_attribute("data-state", "connected")
    expect(widget).to_have_attribute("data-transport", transport)
    label = "connected via kernel" if transport == "kernel" else "connected"
    expect(widget.locator(".jc-state-text")).to_have_text(label)
    return widget


#: marimo runs no Jupyter server: the widget relays through its kernel ("kernel"), or, with
#: "auto", connects to the lab its kernel names when the page can ("direct", the kernel's
#: token; the lab lets token-authenticated pages of other origins in).
@pytest.mark.parametrize(("mode", "transport", "used"), [
    ("edit", "kernel", "kernel"),
    ("run", "kernel", "kernel"),
    ("run", "auto", "direct"),
])  # fmt: skip
def test_a_marimo_notebook_and_a_jupyterlab_page_chat_both_ways_and_see_each_other(
    mode: str,
    transport: str,
    used: str,
    lab: Lab,
    browser: Any,
    marimo: Any,
    open_notebook: OpenNotebook,
) -> None:
    topic = f"{TOPIC}-{mode}-{transport}"
    widget = marimo_widget(browser, marimo(mode, topic, transport), used)
    page = open_notebook(
        f"from jupyter_channels import ChannelWidget\nw = ChannelWidget({topic!r})\nw",
        user="grace",
    )
    from .test_browser import show_widget

    lab_widget = show_widget(page)
    for shown in (widget, lab_widget):
        expect(shown.locator(".jc-count")).to_have_text("2 here")

    say(widget, "hello from marimo")
    say(lab_widget, "hello from jupyterlab")
    for shown in (widget, lab_widget):
        expect(feed(shown)).to_have_text(["hello from marimo", "hello from jupyterlab"])
    wait_until(lambda: len(lab.messages(topic)) == 2)

    # A marimo cell, shared through the widget's control, as typed (marimo's kernel keeps
    # no cell outputs to share).
    widget.page.bring_to_front()
    widget.locator(".jc-share").click()
    widget.locator(".jc-picker-choice", has_text="squares = [n * n").click()
    shared = lab_widget.locator(".jc-cell")
    expect(shared.locator(".jc-code")).to_have_text(
        "squares = [n * n for n in range(4)]  # typed in marimo\nsquares"
    )
