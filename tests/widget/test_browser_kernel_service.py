"""ChannelWidget relayed through its kernel, in real JupyterLab and real Chromium: the
page's server has no channels (the extension is disabled there) and the channels service
is reachable from the kernels only (it refuses the page's origin), as in VS Code or Colab.
Widget messages go through the kernel's main shell (JupyterLab's comms over subshells
are off), so a running cell holds what the page sends.

``ChannelWidget(topic)`` connects "via kernel" by itself; two people chat and see each
other; a kernel busy for 10 s delays what its page sends, loses nothing, and the header
says so meanwhile. ``transport="direct"`` there shows why it cannot connect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from jupyter_channels.constants import ENV_TOKEN, ENV_URL

from ..service_support import SpawnedService, token_of
from .conftest import Lab, OpenNotebook
from .test_browser import cell_output, expect, feed, run_cell, say

TOPIC = "relay:chat"
#: Says when it sleeps: a message sent before would reach the kernel before the cell runs.
SLEEP_CELL = 'import time\nprint("sleeping", flush=True)\ntime.sleep(10)'


@pytest.fixture(scope="module")
def service_and_lab(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SpawnedService, Lab]]:
    root = tmp_path_factory.mktemp("lab-without-channels")
    # No allow_origins: the service refuses WebSockets from the lab's pages.
    service = SpawnedService(root / "service").start()
    try:
        lab = Lab(root / "lab")
        lab.configure({"ServerApp": {"jpserver_extensions": {"jupyter_channels": False}}})
        lab.ready_path = "api/status"
        # Widget messages on the kernel's main shell, as before JupyterLab 4.4 (and where
        # no subshells exist): a cell that runs holds them.
        lab.write_setting("apputils-extension", "kernels-settings", commsOverSubshells="disabled")
        # The kernels the lab starts find the service in their environment.
        with pytest.MonkeyPatch.context() as env:
            env.setenv(ENV_URL, service.ws_url)
            env.setenv(ENV_TOKEN, token_of("ada"))
            lab.start()
        try:
            yield service, lab
        finally:
            lab.stop()
    finally:
        service.stop()


@pytest.fixture(scope="module")
def lab(service_and_lab: tuple[SpawnedService, Lab]) -> Lab:
    return service_and_lab[1]


@pytest.fixture(scope="module")
def service(service_and_lab: tuple[SpawnedService, Lab]) -> SpawnedService:
    return service_and_lab[0]


def widget_cell(topic: str, token: str | None = None, **options: str) -> str:
    args = [repr(topic)] + ([f"token={token!r}"] if token else [])
    args += [f"{k}={v!r}" for k, v in options.items()]
    return f"from jupyter_channels import ChannelWidget\nw = ChannelWidget({', '.join(args)})\nw"


def shown_via_kernel(page: object) -> object:
    run_cell(page, 0)
    widget = page.locator(".jc-widget")  # type: ignore[attr-defined]
    expect(widget).to_have_attribute("data-state", "connected")
    expect(widget).to_have_attribute("data-transport", "kernel")
    expect(widget.locator(".jc-state-text")).to_have_text("connected via kernel")
    return widget


def test_two_people_chat_via_their_kernels_and_a_busy_kernel_delays_but_loses_nothing(
    lab: Lab, service: SpawnedService, open_notebook: OpenNotebook
) -> None:
    assert os.environ.get(ENV_URL) != service.ws_url  # only the lab's kernels know it
    ada = open_notebook(widget_cell(TOPIC), SLEEP_CELL, user="ada")
    grace = open_notebook(widget_cell(TOPIC, token_of("grace")), user="grace")
    widgets = {"ada": shown_via_kernel(ada), "grace": shown_via_kernel(grace)}

    for widget in widgets.values():  # both kernels are here, each as its own user
        expect(widget.locator(".jc-count")).to_have_text("2 here")
        expect(widget.locator(".jc-avatar")).to_have_count(2)

    said = []
    for user, text in [("ada", "hello via my kernel"), ("grace", "hello back")]:
        say(widgets[user], text)
        said.append(text)
        for widget in widgets.values():
            expect(feed(widget)).to_have_text(said)

    # Ada's kernel sleeps 10 s: what her page sends waits in the kernel, and says so.
    run_cell(ada, 1)
    expect(cell_output(ada, 1)).to_have_text("sleeping")
    say(widgets["ada"], "sent while my kernel sleeps")
    expect(widgets["ada"].locator(".jc-state-text")).to_have_text("kernel busy, messages wait")
    expect(widgets["ada"]).to_have_attribute("data-busy", "true")
    say(widgets["grace"], "are you there?")
    # Grace's goes first: Ada's waits in her kernel until the cell ends.
    said += ["are you there?", "sent while my kernel sleeps"]

    prompt = ada.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
    expect(prompt).not_to_have_text("[*]:", timeout=30_000)
    for widget in widgets.values():
        expect(feed(widget)).to_have_text(said)
    expect(widgets["ada"].locator(".jc-state-text")).to_have_text("connected via kernel")
    stored = service.rest("GET", f"api/channels/topics/{TOPIC}/messages")["messages"]
    assert [(m["from"]["user"], m["payload"]["text"]) for m in stored] == [
        ("ada", "hello via my kernel"),
        ("grace", "hello back"),
        ("grace", "are you there?"),
        ("ada", "sent while my kernel sleeps"),
    ]


def test_the_direct_transport_without_an_endpoint_says_why_in_the_widget(
    open_notebook: OpenNotebook,
) -> None:
    page = open_notebook(widget_cell("relay:direct", transport="direct"))
    run_cell(page, 0)
    widget = page.locator(".jc-widget")
    notice = widget.locator(".jc-notice")
    expect(notice).to_contain_text("cannot connect to ws://127.0.0.1:")
    expect(notice).to_contain_text('transport="kernel") relays through the kernel')
    expect(widget).to_have_attribute("data-transport", "direct")
    expect(widget).not_to_have_attribute("data-state", "connected")
