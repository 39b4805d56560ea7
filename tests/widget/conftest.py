"""Fixtures of the widget tests: a spawned ``jupyter lab`` with the extension, Chromium
through Playwright, and notebooks opened in it.

The browser is Debian's ``/usr/bin/chromium`` (Playwright never downloads one). With
``CI`` set, a missing browser or Playwright fails the tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ..channels_fixture import USER_HEADER
from ..support import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("JUPYTER_CHANNELS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the browser tests leave their screenshots (git-ignored).
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
#: Generous deadlines: a cold kernel start plus JupyterLab's first load on a busy machine.
PAGE_TIMEOUT = 60_000
WIDGET_TIMEOUT = 30_000


def missing(what: str) -> NoReturn:
    """A missing dependency fails the run (scripts/setup --test installs it): never a skip."""
    pytest.fail(f"{what} (the browser tests need it; see scripts/setup --test)", pytrace=False)


def notebook_json(cells: tuple[str, ...]) -> dict[str, Any]:
    """A notebook of code cells with python3 kernelspec metadata (else JupyterLab asks
    which kernel to use)."""
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": uuid.uuid4().hex[:8],
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for source in cells
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class Lab:
    """A ``jupyter lab`` subprocess with the extension, the test identities
    (``X-Test-User``) and its own settings, workspaces and history."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token = "lab-token-" + uuid.uuid4().hex[:8]
        self.notebooks = root / "notebooks"
        self.settings = root / "settings"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "lab.log"

    #: What answers once it is up (a lab pointing at a channels service has no channels).
    ready_path = "api/channels/topics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def configure(self, config: dict[str, Any]) -> Lab:
        """Write ``config`` as the lab's ``jupyter_server_config.json`` (before ``start``)."""
        directory = self.root / "config"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "jupyter_server_config.json").write_text(json.dumps(config))
        return self

    def start(self, timeout: float = 90) -> Lab:
        self.notebooks.mkdir(parents=True)
        # No "Jupyter news?" toast over the widget.
        self.write_setting("apputils-extension", "notification", fetchNews="false")
        args = [
            sys.executable, "-m", "jupyterlab",
            "--allow-root", "--no-browser",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.identity_provider_class=tests.channels_fixture.HeaderUsers",
            f"--ServerApp.root_dir={self.notebooks}",
            f"--ChannelsApp.history_path={self.root / 'history.sqlite'}",
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.getenv("PYTHONPATH")])),
            "JUPYTERLAB_SETTINGS_DIR": str(self.settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.root / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self.root / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log_tail()}")
            try:
                self.rest("GET", self.ready_path)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"jupyter lab did not start: {self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def write_setting(self, plugin: str, name: str, **values: Any) -> None:
        """A user setting of ``@jupyterlab/<plugin>:<name>``; pages read it when they load."""
        path = self.settings / "@jupyterlab" / plugin / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    def notebook(self, *cells: str, name: str | None = None) -> str:
        """Write a new notebook of these code cells; returns its path."""
        name = name or f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        (self.notebooks / name).write_text(json.dumps(notebook_json(cells)))
        return name

    def rest(self, method: str, path: str, body: Any = None, user: str = "alan") -> Any:
        """A REST call authenticated with the server token, as test user ``user``."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
                USER_HEADER: user,
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def post(self, topic: str, subject: str, payload: Any, user: str = "alan") -> int:
        """Post a message through the REST endpoint; returns its offset."""
        quoted = urllib.parse.quote(topic, safe="")
        answer = self.rest(
            "POST",
            f"api/channels/topics/{quoted}/messages",
            {"subject": subject, "payload": payload},
            user,
        )
        return int(answer["offset"])

    def messages(self, topic: str) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(topic, safe="")
        return list(self.rest("GET", f"api/channels/topics/{quoted}/messages")["messages"])

    def shutdown_sessions(self) -> None:
        """Stop every kernel the pages started."""
        for session in self.rest("GET", "api/sessions"):
            self.rest("DELETE", f"api/sessions/{session['id']}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jp_asyncio_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Replaces pytest-jupyter's autouse loop fixture here: it would pick up the loop that
    Playwright's sync API marks as running in this thread, and close it. These tests run
    no in-process server."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def jp_server_cleanup() -> None:
    """Replaces pytest-jupyter's autouse cleanup of the in-process server (there is none)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing('Playwright is not installed (pip install -e ".[dev]")')
    # Assertions wait as long as actions do (Playwright's own default is 5 s).
    expect.set_options(timeout=WIDGET_TIMEOUT)
    if not CHROMIUM.is_file():
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


OpenNotebook = Callable[..., Any]


@pytest.fixture
def open_notebook(lab: Lab, browser: Any) -> Iterator[OpenNotebook]:
    """``open_notebook(*cells, user="ada", port=None, app="lab", name=None)``: a new
    browser context (one identity) showing a new notebook of these cells, its kernel
    idle, in JupyterLab (``app="notebook"``: Notebook 7). ``port`` loads the page
    through another port (a relay)."""
    from playwright.sync_api import expect

    contexts: list[Any] = []

    def open_(
        *cells: str,
        user: str = "ada",
        port: int | None = None,
        app: str = "lab",
        name: str | None = None,
    ) -> Any:
        path = lab.notebook(*cells, name=name)
        context = browser.new_context(
            viewport={"width": 1100, "height": 900}, extra_http_headers={USER_HEADER: user}
        )
        context.set_default_timeout(WIDGET_TIMEOUT)
        contexts.append(context)
        page = context.new_page()
        # JupyterLab's own dialog when a request failed (a cut): it takes the keyboard, so
        # it is closed before any action, as a person would close it.
        page.add_locator_handler(
            page.locator(".jp-Dialog").filter(has_text="Server Connection Error"),
            lambda dialog: dialog.get_by_role("button", name="Close").click(),
        )
        base = f"http://127.0.0.1:{port or lab.port}/"
        # A workspace of its own: JupyterLab would restore the other pages' tabs.
        where = f"lab/workspaces/{uuid.uuid4().hex[:8]}/tree" if app == "lab" else "notebooks"
        page.goto(f"{base}{where}/{path}?token={lab.token}")
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=PAGE_TIMEOUT)
        wait_for_kernel(lab, path)
        return page

    yield open_
    for context in contexts:
        context.close()
    lab.shutdown_sessions()


def wait_for_kernel(lab: Lab, path: str) -> None:
    """Until the page's kernel for ``path`` has started and is idle."""
    deadline = time.monotonic() + PAGE_TIMEOUT / 1000
    while time.monotonic() < deadline:
        for session in lab.rest("GET", "api/sessions"):
            if session["path"] == path and session["kernel"]["execution_state"] == "idle":
                return
        time.sleep(0.2)
    raise AssertionError(f"no idle kernel for {path}: {lab.rest('GET', 'api/sessions')}")
