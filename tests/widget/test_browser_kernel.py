"""ChannelWidget forced to relay through its kernel (``transport="kernel"``) in real
JupyterLab, in real Chromium: it works as the direct one does, a sleeping kernel does not
hold it (JupyterLab sends widget messages over kernel subshells), and re-running its cell
20 times leaves the kernel one connection, one subscription and no extra thread.
"""

from __future__ import annotations

import json
from typing import Any

from .conftest import Lab, OpenNotebook
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


def test_with_comms_over_subshells_a_sleeping_kernel_does_not_hold_the_relay(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "kernel:subshells"
    page = open_notebook(kernel_widget_cell(topic), "import time\ntime.sleep(30)")
    widget = shown_via_kernel(page)
    run_cell(page, 1)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
    expect(prompt).to_have_text("[*]:")

    lab.post(topic, "text", {"text": "are you there?"}, user="grace")
    expect(feed(widget)).to_have_text(["are you there?"])
    say(widget, "yes, through my sleeping kernel")
    wait_until(lambda: len(lab.messages(topic)) == 2)
    expect(prompt).to_have_text("[*]:")  # the kernel was busy all along


#: Prints what the kernel holds: connections, threads, subscriptions, the topic's holders
#: and the pages' relay links.
INSPECT = """\
import json, threading
from jupyter_channels import kernel_relay
shared = kernel_relay.existing_connections()
print(json.dumps({
    "connections": len(shared),
    "threads": threading.active_count(),
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


def inspect(page: Any) -> dict[str, Any]:
    run_to_end(page, 1)
    output = cell_output(page, 1)
    expect(output).to_contain_text('"connections"')
    return dict(json.loads(output.inner_text()))


def test_re_running_the_widget_cell_20_times_leaves_one_connection_and_no_extra_thread(
    open_notebook: OpenNotebook,
) -> None:
    topic = "kernel:reruns"
    page = open_notebook(kernel_widget_cell(topic), INSPECT.replace("TOPIC", repr(topic)))
    shown_via_kernel(page)
    first = inspect(page)
    assert first == {
        "connections": 1,
        "threads": first["threads"],
        "topics": [topic],
        "holders": 1,
        "links": 1,
    }

    for _ in range(20):
        run_to_end(page, 0)
        widget = page.locator(".jc-widget")
        expect(widget).to_have_count(1)
        expect(widget).to_have_attribute("data-state", "connected")

    wait_until(lambda: inspect(page) == first, timeout=60)
