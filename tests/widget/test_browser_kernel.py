"""ChannelWidget forced to relay through its kernel (``transport="kernel"``) in real
JupyterLab, in real Chromium: it works as the direct one does, and re-running its cell
20 times, or reloading the page, leaves the kernel one connection, one subscription
and no extra thread.
"""

from __future__ import annotations

import json
from typing import Any

from .conftest import PAGE_TIMEOUT, Lab, OpenNotebook
from .test_browser import cell_output, expect, feed, run_cell, say, wait_until


def kernel_widget_cell(topic: str) -> str:
    return (
        "from jupyter_channels import ChannelWidget\n"
        f"w = ChannelWidget({topic!r}, transport='kernel')\nw"
    )


def shown_via_kernel(page: Any, cell: int = 0) -> Any:
    run_cell(page, cell)
    widget = page.locator(".jc-widget")
    expect(widget).to_have_attribute("data-state", "connected")
    expect(widget).to_have_attribute("data-transport", "kernel")
    expect(widget.locator(".jc-state-text")).to_have_text("connected via kernel")
    return widget


def test_a_widget_forced_to_the_kernel_transport_chats_with_a_direct_one(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "kernel:forced"
    relayed = shown_via_kernel(open_notebook(kernel_widget_cell(topic), user="ada"))
    grace = open_notebook(
        f"from jupyter_channels import ChannelWidget\nw = ChannelWidget({topic!r})\nw",
        user="grace",
    )
    run_cell(grace, 0)
    direct = grace.locator(".jc-widget")
    expect(direct).to_have_attribute("data-state", "connected")
    expect(direct).to_have_attribute("data-transport", "direct")
    expect(direct.locator(".jc-state-text")).to_have_text("connected")

    say(relayed, "relayed hello")
    say(direct, "direct hello")
    lab.post(topic, "text", {"text": "from rest"}, user="alan")
    for widget in (relayed, direct):
        expect(feed(widget)).to_have_text(["relayed hello", "direct hello", "from rest"])
    # The direct page is grace; the relayed page is its kernel, with its kernel token.
    expect(direct.locator(".jc-avatar")).to_have_count(2)
    assert [m["payload"]["text"] for m in lab.messages(topic)] == [
        "relayed hello",
        "direct hello",
        "from rest",
    ]


#: Prints what the kernel holds: connections, threads, subscriptions, the topic's holders
#: and the pages' relay links.
INSPECT = """\
import json, threading
from jupyter_channels import kernel_relay
shared = kernel_relay.existing_connections()
print(json.dumps({
    "connections": len(shared),
    "threads": threading.active_count(),
    "client_threads": sum(t.name == "jupyter-channels" for t in threading.enumerate()),
    "topics": shared[0].topics,
    "holders": shared[0].holders(TOPIC),
    "links": len(shared[0].links),
}))
"""


def run_to_end(page: Any, cell: int) -> None:
    """Run a cell (again) and wait until this run ended."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-InputPrompt")
    before = prompt.inner_text()
    run_cell(page, cell)
    expect(prompt).not_to_have_text(before)
    expect(prompt).not_to_have_text("[*]:")


def settles_to(
    page: Any, expected: dict[str, Any], ignoring: str = "", timeout: float = 60
) -> None:
    """Until what the kernel holds is ``expected``, but for the figure ``ignoring`` (the
    last seen in the failure)."""
    seen: list[dict[str, Any]] = []

    def holds() -> bool:
        seen.append({k: v for k, v in inspect(page).items() if k != ignoring})
        return seen[-1] == {k: v for k, v in expected.items() if k != ignoring}

    try:
        wait_until(holds, timeout)
    except AssertionError:
        raise AssertionError(f"the kernel holds {seen[-1:]}, not {expected}") from None


def inspect(page: Any) -> dict[str, Any]:
    run_to_end(page, 1)
    output = cell_output(page, 1)
    expect(output).to_contain_text('"connections"')
    try:
        return dict(json.loads(output.inner_text()))
    except ValueError:  # the output area redrawn while read: asked again
        return {}


def test_20_re_runs_and_a_reload_leave_one_connection_one_link_and_no_extra_thread(
    open_notebook: OpenNotebook,
) -> None:
    topic = "kernel:reruns"
    page = open_notebook(kernel_widget_cell(topic), INSPECT.replace("TOPIC", repr(topic)))
    shown_via_kernel(page)
    first: dict[str, Any] = {}
    wait_until(lambda: first.update(inspect(page)) or first)
    assert first == {
        "connections": 1,
        "threads": first["threads"],
        "client_threads": 1,
        "topics": [topic],
        "holders": 1,
        "links": 1,
    }

    for _ in range(20):
        run_to_end(page, 0)
        widget = page.locator(".jc-widget")
        expect(widget).to_have_count(1)
        expect(widget).to_have_attribute("data-state", "connected")

    settles_to(page, first)

    # The page reloads (the notebook was not saved: no widget shows) and the cell runs
    # again: the kernel holds what it held, whether or not the old page's link closed as
    # it unloaded.
    page.reload()
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=PAGE_TIMEOUT)
    run_to_end(page, 0)
    expect(page.locator(".jc-widget")).to_have_attribute("data-state", "connected")
    # The new page may add kernel threads of its own (JupyterLab's comm subshells): none
    # of this package's.
    settles_to(page, first, ignoring="threads")
