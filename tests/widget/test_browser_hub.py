"""ChannelWidget on a real JupyterHub (tests/hub_support.py), in real Chromium: people log
in through the hub's login page, start their own servers and chat through the channels
service, signed in by the hub's OAuth; the service survives a restart under the pages;
its cookie opens nothing from another origin; a page whose hub login is gone shows a
sign-in link that completes the flow in a new tab.

One hub and two logged-in people (alice and bob, each a browser context with a notebook
open) serve the whole module; the tests run in order, the service's restart and the
sign-in last. The hub's server-side tests are in tests/test_jupyterhub.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from ..hub_support import PASSWORD, SpawnedHub, require
from .conftest import PAGE_TIMEOUT, notebook_json
from .test_browser import cell_output, expect, feed, run_cell, say, widget_cell

TOPIC = "chat:lobby"
#: A spawn, or the service's restart (the hub polls its services every 30 s), in ms.
HUB_TIMEOUT = 150_000
KERNEL_CELL = (
    "import jupyter_channels as jc\n"
    'jc.join("chat:lobby").send("text", {"text": "from alice\'s kernel"})'
)
SHARED_SOURCE = 'print("shared by alice")\n6 * 7'
NOTEBOOKS = {
    "alice": (
        widget_cell(TOPIC),
        KERNEL_CELL,
        "%load_ext jupyter_channels",
        f"%%share {TOPIC}\n{SHARED_SOURCE}",
    ),
    "bob": (widget_cell(TOPIC), "%load_ext jupyter_channels\n%channels paste"),
}


class Person:
    """A hub user in a browser context of their own, with a notebook of theirs open."""

    def __init__(self, hub: SpawnedHub, browser: Any, user: str) -> None:
        self.hub = hub
        self.user = user
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.context.set_default_timeout(PAGE_TIMEOUT)
        self.page: Any = None

    def log_in(self, page: Any) -> None:
        """Submit the hub's login form; the hub then goes on to the user's server."""
        page.goto(f"{self.hub.url}hub/login")
        page.locator("#username_input").fill(self.user)
        page.locator("#password_input").fill(PASSWORD)
        page.locator("#login_submit").click()

    def wait_for_lab(self, page: Any) -> None:
        page.wait_for_url(f"**/user/{self.user}/lab**", timeout=HUB_TIMEOUT)

    def write_notebook(self, *cells: str) -> str:
        name = f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        home = self.hub.root / "home" / self.user
        (home / name).write_text(json.dumps(notebook_json(cells)))
        return name

    def open_notebook(self, name: str, page: Any = None) -> Any:
        """``name`` in JupyterLab (a workspace of its own), once its kernel is idle."""
        page = page or self.context.new_page()
        workspace = uuid.uuid4().hex[:8]
        page.goto(f"{self.hub.url}user/{self.user}/lab/workspaces/{workspace}/tree/{name}")
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=PAGE_TIMEOUT)
        wait_for_kernel(self.hub, self.user, name)
        return page

    def show_widget(self, page: Any) -> Any:
        run_cell(page, 0)
        widget = page.locator(".jc-widget")
        expect(widget).to_have_attribute("data-state", "connected", timeout=PAGE_TIMEOUT)
        return widget

    def cookies(self) -> dict[str, str]:
        """Every cookie the browser holds for the hub's host, whatever its path."""
        host = self.hub.origin.partition("://")[2].partition(":")[0]
        return {c["name"]: c["value"] for c in self.context.cookies() if c["domain"] == host}

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies().items())


class Lobby:
    """alice and bob, each showing the widget of ``chat:lobby`` in a notebook of theirs."""

    def __init__(self, hub: SpawnedHub, browser: Any) -> None:
        self.hub = hub
        self.people = {user: Person(hub, browser, user) for user in NOTEBOOKS}
        self.notebooks = {user: "" for user in NOTEBOOKS}
        self.widgets: dict[str, Any] = {}

    def start(self) -> None:
        pages = {user: person.context.new_page() for user, person in self.people.items()}
        for user, person in self.people.items():  # both servers spawn at once
            person.log_in(pages[user])
        for user, person in self.people.items():
            person.wait_for_lab(pages[user])
            self.notebooks[user] = person.write_notebook(*NOTEBOOKS[user])
            self.open(user, pages[user])

    def open(self, user: str, page: Any = None) -> Any:
        person = self.people[user]
        person.page = person.open_notebook(self.notebooks[user], page)
        self.widgets[user] = person.show_widget(person.page)
        return self.widgets[user]

    def page(self, user: str) -> Any:
        return self.people[user].page

    def close(self) -> None:
        for person in self.people.values():
            person.context.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedHub]:
    require()
    spawned = SpawnedHub(Path(tmp_path_factory.mktemp("hub")))
    spawned.start()
    try:
        for user in NOTEBOOKS:  # no "Jupyter news?" toast over the widget
            settings = spawned.root / "home" / user / ".jupyter" / "lab" / "user-settings"
            notification = settings / "@jupyterlab" / "apputils-extension"
            notification.mkdir(parents=True)
            (notification / "notification.jupyterlab-settings").write_text(
                json.dumps({"fetchNews": "false"})
            )
        yield spawned
    finally:
        spawned.stop()


@pytest.fixture(scope="module")
def lobby(hub: SpawnedHub, browser: Any) -> Iterator[Lobby]:
    people = Lobby(hub, browser)
    try:
        people.start()
        yield people
    finally:
        people.close()


def wait_for_kernel(hub: SpawnedHub, user: str, path: str) -> None:
    """Until the kernel of ``user``'s notebook ``path`` has started and is idle."""
    token = hub.token_for(user, [f"access:servers!user={user}"])
    request = urllib.request.Request(
        f"{hub.url}user/{user}/api/sessions", headers={"Authorization": f"token {token}"}
    )
    deadline = time.monotonic() + PAGE_TIMEOUT / 1000
    sessions: list[Any] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=30) as response:
            sessions = json.loads(response.read())
        for session in sessions:
            if session["path"] == path and session["kernel"]["execution_state"] == "idle":
                return
        time.sleep(0.3)
    raise AssertionError(f"no idle kernel for {path}: {sessions}")


def stored_texts(hub: SpawnedHub, token: str) -> list[str]:
    """The texts the service holds in the lobby, oldest first."""
    page = hub.service_rest("GET", f"api/channels/topics/{TOPIC}/messages", token=token)
    return [m["payload"]["text"] for m in page["messages"] if m["subject"] == "text"]


def post(hub: SpawnedHub, text: str, *, token: str | None = None, cookie: str = "") -> Any:
    """POST a text to the lobby with a token, or with only ``cookie``."""
    request = urllib.request.Request(
        f"{hub.service_url}api/channels/topics/{TOPIC}/messages",
        data=json.dumps({"subject": "text", "payload": {"text": text}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token:
        request.add_header("Authorization", f"token {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def handshake(hub: SpawnedHub, headers: dict[str, str]) -> int:
    """The status of a WebSocket handshake with the service (101: accepted). Run in a
    thread of its own: Playwright's sync API holds this thread's event loop."""

    async def attempt() -> int:
        request = HTTPRequest(
            hub.service_ws, headers=headers, connect_timeout=30, request_timeout=30
        )
        try:
            conn = await websocket_connect(request)
        except HTTPClientError as e:
            return e.code
        conn.close()
        return 101

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, attempt()).result()


def wait_for_service(hub: SpawnedHub, token: str, old_pid: int) -> None:
    """Until the hub has started the service again and it answers."""
    deadline = time.monotonic() + HUB_TIMEOUT / 1000
    while time.monotonic() < deadline:
        try:
            if hub.service_process().pid != old_pid:
                hub.service_rest("GET", "api/channels/topics", token=token)
                return
        except (LookupError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the hub did not restart the service: {hub.log_tail()}")


# -- two people -------------------------------------------------------------------------------


def test_two_hub_users_chat_under_their_hub_names_and_see_who_is_here(lobby: Lobby) -> None:
    at_alice, at_bob = lobby.widgets["alice"], lobby.widgets["bob"]
    for widget in (at_alice, at_bob):
        expect(widget.locator(".jc-count")).to_have_text("2 here")
        for user in ("alice", "bob"):
            avatar = widget.locator(f'.jc-avatar[data-user="{user}"]')
            expect(avatar).to_have_attribute("title", user)  # the hub's name, one connection

    say(at_alice, "hello from alice")
    from_alice = at_bob.locator(".jc-msg", has_text="hello from alice")
    expect(from_alice.locator(".jc-author")).to_have_text("alice")
    expect(from_alice.locator(".jc-author")).to_have_attribute("data-kind", "browser")
    say(at_bob, "hello from bob")
    from_bob = at_alice.locator(".jc-msg", has_text="hello from bob")
    expect(from_bob.locator(".jc-author")).to_have_text("bob")
    for widget in (at_alice, at_bob):
        expect(feed(widget)).to_have_text(["hello from alice", "hello from bob"])

    lobby.page("bob").close()
    expect(at_alice.locator(".jc-count")).to_have_text("1 here")
    expect(at_alice.locator('.jc-avatar[data-user="bob"]')).to_have_count(0)

    # bob comes back (the later tests need him): his page shows what was said.
    at_bob = lobby.open("bob")
    expect(feed(at_bob)).to_have_text(["hello from alice", "hello from bob"])
    expect(at_alice.locator(".jc-count")).to_have_text("2 here")


def test_a_kernel_joins_and_sends_with_no_arguments_as_its_hub_user(lobby: Lobby) -> None:
    run_cell(lobby.page("alice"), 1)
    seen = lobby.widgets["bob"].locator(".jc-msg", has_text="from alice's kernel")
    expect(seen.locator(".jc-author")).to_have_text("alice")
    expect(seen.locator(".jc-author")).to_have_attribute("data-kind", "kernel")
    mine = lobby.widgets["alice"].locator(".jc-msg", has_text="from alice's kernel")
    expect(mine).to_have_count(1)


def test_a_shared_cell_reaches_the_other_user_and_pastes_into_his_notebook(lobby: Lobby) -> None:
    alice, bob = lobby.page("alice"), lobby.page("bob")
    run_cell(alice, 2)
    run_cell(alice, 3)
    expect(cell_output(alice, 3)).to_have_text(["shared by alice\n", "42"])
    shared = lobby.widgets["bob"].locator('.jc-msg[data-subject="cell"]')
    expect(shared.locator(".jc-author")).to_have_text("alice")
    expect(shared.locator(".jc-code")).to_have_text(SHARED_SOURCE)
    expect(shared.locator(".jc-stream")).to_have_text("shared by alice\n")
    expect(shared.locator(".jc-plain")).to_have_text("42")

    run_cell(bob, 1)
    cells = bob.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(3)
    expect(cells.nth(2).locator(".jp-InputArea-editor .cm-line")).to_have_text(
        SHARED_SOURCE.split("\n")
    )
    expect(cells.nth(2).locator(".jp-InputPrompt")).to_have_text("[ ]:")  # not run
    expect(cells.nth(2).locator(".jp-OutputArea-output")).to_have_count(0)


# -- what the service's cookie opens ----------------------------------------------------------


def test_the_service_cookie_opens_the_socket_from_the_hubs_origin_only_and_no_rest_writes(
    hub: SpawnedHub, lobby: Lobby
) -> None:
    alice = lobby.people["alice"]
    names = list(alice.cookies())
    assert "service-channels" in names, names  # the service's OAuth cookie
    cookie = alice.cookie_header()

    assert handshake(hub, {"Cookie": cookie, "Origin": "http://evil.example"}) == 403
    assert handshake(hub, {"Origin": hub.origin}) == 403  # no cookie: nobody
    assert handshake(hub, {"Cookie": cookie, "Origin": hub.origin}) == 101

    # A write with only the cookie: JupyterHub's XSRF rule refuses it; a token is let in.
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(hub, "forged from a cookie", cookie=cookie)
    assert refused.value.code == 403
    token = hub.token_for("alice")
    assert isinstance(post(hub, "posted with a token", token=token)["offset"], int)
    texts = stored_texts(hub, token)
    assert "posted with a token" in texts
    assert "forged from a cookie" not in texts
    expect(lobby.widgets["bob"].locator(".jc-msg", has_text="posted with a token")).to_have_count(1)


# -- the service restarts ---------------------------------------------------------------------


def test_after_the_service_restarts_both_pages_reconnect_and_lose_or_double_nothing(
    hub: SpawnedHub, lobby: Lobby
) -> None:
    at_alice, at_bob = lobby.widgets["alice"], lobby.widgets["bob"]
    bob_token = hub.token_for("bob")
    say(at_alice, "before the restart")
    for widget in (at_alice, at_bob):
        expect(feed(widget).last).to_have_text("before the restart")

    old = hub.service_process()
    old.terminate()
    old.wait(60)
    for widget in (at_alice, at_bob):
        expect(widget).not_to_have_attribute("data-state", "connected")
    wait_for_service(hub, bob_token, old.pid)
    post(hub, "while the pages were away", token=bob_token)

    for widget in (at_alice, at_bob):  # by themselves, with the cookie they had
        expect(widget).to_have_attribute("data-state", "connected", timeout=HUB_TIMEOUT)
    say(at_alice, "after the restart")
    expect(feed(at_bob).last).to_have_text("after the restart")

    texts = stored_texts(hub, bob_token)
    assert texts[-3:] == ["before the restart", "while the pages were away", "after the restart"]
    for widget in (at_alice, at_bob):
        expect(feed(widget)).to_have_text(texts)


# -- signing in -------------------------------------------------------------------------------


def test_a_page_without_a_hub_login_shows_a_sign_in_link_that_connects_it(
    hub: SpawnedHub, browser: Any, lobby: Lobby
) -> None:
    alice = Person(hub, browser, "alice")
    try:
        page = alice.context.new_page()
        alice.log_in(page)
        alice.wait_for_lab(page)
        # The hub's login is gone (the server's own cookie stays): the widget cannot sign in.
        alice.context.clear_cookies(name="jupyterhub-hub-login")
        assert "service-channels" not in alice.cookies()
        page = alice.open_notebook(alice.write_notebook(widget_cell(TOPIC)), page)
        page.evaluate("window.__notReloaded = true")
        run_cell(page, 0)
        widget = page.locator(".jc-widget")
        link = widget.locator("a.jc-signin")
        expect(link).to_have_text("Sign in to channels")
        expect(widget).to_have_attribute("data-state", "signed-out")
        expect(widget.locator(".jc-state-text")).to_have_text("not signed in")

        with alice.context.expect_page() as opened:
            link.click()
        tab = opened.value
        expect(tab.locator("#username_input")).to_be_visible()  # the hub's login page
        tab.locator("#username_input").fill("alice")
        tab.locator("#password_input").fill(PASSWORD)
        tab.locator("#login_submit").click()
        expect(tab).to_have_title("Signed in to channels")
        expect(tab.locator("body")).to_contain_text("Signed in to channels as alice")

        page.bring_to_front()
        expect(widget).to_have_attribute("data-state", "connected")
        expect(link).to_have_count(0)
        expect(feed(widget)).to_have_text(stored_texts(hub, hub.token_for("alice")))
        say(widget, "signed in from a new tab")
        expect(feed(lobby.widgets["bob"]).last).to_have_text("signed in from a new tab")
        assert page.evaluate("window.__notReloaded") is True
    finally:
        alice.context.close()
