"""ChannelWidget in real JupyterLab, in real Chromium: people, kernels and REST clients
meet in a topic; the page survives a cut connection and a busy kernel; received text is
never HTML.

Each test opens its own notebooks (a browser context per identity, ``X-Test-User``
through ``tests.channels_fixture.HeaderUsers``) on its own topic; one JupyterLab and one
Chromium serve the whole module. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import time
import zlib
from typing import Any

from .conftest import Lab, OpenNotebook
from .relay import TcpRelay


def widget_cell(topic: str) -> str:
    return f"from jupyter_channels import ChannelWidget\nw = ChannelWidget({topic!r})\nw"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def run_cell(page: Any, index: int) -> None:
    """Run the notebook's cell ``index`` (click into it, Ctrl+Enter) and wait until it
    has started."""
    page.bring_to_front()  # a page in the background gets no animation frames: no clicks
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    expect(cell.locator(".jp-InputPrompt")).not_to_have_text("[ ]:")


def show_widget(page: Any, cell: int = 0) -> Any:
    """Run the cell that displays the widget; returns it once connected and joined."""
    run_cell(page, cell)
    widget = page.locator(".jc-widget")
    expect(widget).to_have_attribute("data-state", "connected")
    return widget


def say(widget: Any, text: str) -> None:
    """Type a line into the widget and press Enter; the box empties once it is sent."""
    widget.page.bring_to_front()
    box = widget.locator(".jc-input")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def feed(widget: Any) -> Any:
    return widget.locator(".jc-msg .jc-text")


def cell_output(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output")


def wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.1)


def png(width: int, height: int, ink: Any) -> str:
    """A PNG (base64) whose pixel (x, y) is ``ink(x, y)`` -> (r, g, b)."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(ink(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(raw).decode()


def loss_curve_png() -> str:
    """A small plot of a decaying loss, for the shared cell in the screenshots."""
    width, height = 240, 90

    def ink(x: int, y: int) -> tuple[int, int, int]:
        curve = 8 + (height - 18) * (1 - math.exp(-x / 40))
        if abs(y - curve) < 1.6:
            return (31, 119, 180)
        if y == height - 6 or x == 6:
            return (120, 120, 120)
        return (255, 255, 255)

    return png(width, height, ink)


# -- people -----------------------------------------------------------------------------------


def test_two_people_chat_and_see_who_is_here(open_notebook: OpenNotebook) -> None:
    ada = open_notebook(widget_cell("chat:lobby"), user="ada")
    grace = open_notebook(widget_cell("chat:lobby"), user="grace")
    at_ada, at_grace = show_widget(ada), show_widget(grace)

    expect(at_ada.locator(".jc-count")).to_have_text("2 here")
    expect(at_grace.locator(".jc-count")).to_have_text("2 here")
    expect(at_ada.locator(".jc-avatar")).to_have_text(["AL", "GH"])
    expect(at_ada.locator('.jc-avatar[data-user="grace"]')).to_have_attribute(
        "style", re.compile("background-color: rgb\\(63, 81, 181\\)")
    )

    say(at_ada, "hello from Ada")
    seen = at_grace.locator(".jc-msg", has_text="hello from Ada")
    expect(seen.locator(".jc-author")).to_have_text("Ada Lovelace")
    expect(at_ada.locator(".jc-msg", has_text="hello from Ada")).to_have_count(1)
    expect(at_ada.locator(".jc-input")).to_have_value("")

    grace.close()
    expect(at_ada.locator(".jc-count")).to_have_text("1 here")
    expect(at_ada.locator(".jc-avatar")).to_have_text(["AL"])


def test_the_page_joins_when_the_widget_is_made_before_it_is_shown(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    page = open_notebook(
        'from jupyter_channels import ChannelWidget\nw = ChannelWidget("unseen:room")', "w"
    )
    run_cell(page, 0)
    wait_until(lambda: list(lab.rest("GET", "api/channels/topics/unseen:room/presence")) == ["ada"])
    lab.post("unseen:room", "text", {"text": "while nobody looked"})
    assert page.locator(".jc-widget").count() == 0
    widget = show_widget(page, cell=1)
    expect(feed(widget)).to_have_text(["while nobody looked"])


def test_messages_from_rest_and_from_the_kernel_appear_and_reach_the_kernel(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    page = open_notebook(
        widget_cell("kernel:room"),
        'got = []\nw.on("text", lambda m: got.append(m.payload["text"]))\n'
        'w.send("text", {"text": "from the kernel"})',
        "import time\nfor _ in range(200):\n    if 'from the page' in got:\n        break\n"
        "    time.sleep(0.05)\nprint(got, sorted(w.members), len(w.messages))",
    )
    widget = show_widget(page)

    lab.post("kernel:room", "text", {"text": "from REST"}, user="alan")
    rest = widget.locator(".jc-msg", has_text="from REST")
    expect(rest.locator(".jc-author")).to_have_text("Alan Turing")

    run_cell(page, 1)
    kernel = widget.locator(".jc-msg", has_text="from the kernel")
    expect(kernel.locator(".jc-author")).to_have_attribute("data-kind", "kernel")
    expect(widget.locator(".jc-count")).to_have_text("2 here")  # Ada, and the kernel side
    expect(widget.locator('.jc-avatar[data-kind="kernel"]')).to_have_text("K")

    say(widget, "from the page")
    run_cell(page, 2)
    # The kernel's callback saw its own message too (the channel rebroadcasts to the sender).
    expect(cell_output(page, 2)).to_have_text(
        "['from the kernel', 'from the page'] ['ada', 'kernel'] 3\n"
    )


def test_setting_the_topic_from_python_rejoins_with_the_last_50(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    for n in range(1, 61):
        lab.post("seeded:room", "text", {"text": f"message {n}"})
    page = open_notebook(widget_cell("empty:room"), 'w.topic = "seeded:room"')
    widget = show_widget(page)
    expect(widget.locator(".jc-topic")).to_have_text("empty:room")
    expect(feed(widget)).to_have_count(0)

    run_cell(page, 1)
    expect(widget.locator(".jc-topic")).to_have_text("seeded:room")
    expect(feed(widget)).to_have_text([f"message {n}" for n in range(11, 61)])

    lab.post("seeded:room", "text", {"text": "message 61"})
    expect(feed(widget).last).to_have_text("message 61")


def test_the_widget_receives_and_sends_while_its_kernel_sleeps(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    page = open_notebook(widget_cell("busy:room"), "import time\ntime.sleep(20)")
    widget = show_widget(page)
    run_cell(page, 1)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
    expect(prompt).to_have_text("[*]:")

    lab.post("busy:room", "text", {"text": "are you there?"}, user="grace")
    expect(widget.locator(".jc-msg", has_text="are you there?")).to_have_count(1)
    say(widget, "yes, while my kernel sleeps")
    wait_until(
        lambda: (
            "yes, while my kernel sleeps"
            in [m["payload"].get("text") for m in lab.messages("busy:room")]
        )
    )
    expect(prompt).to_have_text("[*]:")  # the kernel was busy all along


# -- the connection ---------------------------------------------------------------------------


def test_after_a_cut_the_page_shows_every_missed_message_once_in_order(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    with TcpRelay(lab.port) as relay:
        ada = open_notebook(widget_cell("cut:room"), user="ada", port=relay.port)
        grace = open_notebook(widget_cell("cut:room"), user="grace")
        at_ada, at_grace = show_widget(ada), show_widget(grace)
        say(at_grace, "before the cut")
        expect(feed(at_ada)).to_have_text(["before the cut"])

        ada.context.set_offline(True)
        relay.cut()
        expect(at_ada).to_have_attribute("data-state", "offline")
        expect(at_ada.locator(".jc-state-text")).to_have_text("offline")
        missed = [f"missed {n}" for n in range(1, 6)]
        for text in missed:
            say(at_grace, text)
        expect(feed(at_grace)).to_have_text(["before the cut", *missed])
        expect(feed(at_ada)).to_have_text(["before the cut"])

        relay.restore()
        ada.context.set_offline(False)  # the "online" event: reconnect now, not after backoff
        expect(at_ada).to_have_attribute("data-state", "connected")
        expect(at_ada.locator(".jc-state-text")).to_have_text("connected")
        expect(feed(at_ada)).to_have_text(["before the cut", *missed])

        say(at_ada, "back")
        expect(feed(at_grace).last).to_have_text("back")
        expect(feed(at_ada)).to_have_text(["before the cut", *missed, "back"])


def test_a_topic_of_big_messages_shows_its_newest_while_another_topic_stays_joined(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    # Five messages of about 1 MiB (max_message_size): more than one connection may have
    # queued (max_queued_bytes, 4 MiB), so one join reply holding them all would close it.
    for n in range(1, 6):
        lab.post("big:room", "text", {"text": f"big {n} " + "x" * 1_000_000})
    page = open_notebook(widget_cell("calm:room"), widget_cell("big:room"))
    run_cell(page, 0)
    calm = page.locator(".jc-widget").nth(0)
    expect(calm).to_have_attribute("data-state", "connected")
    run_cell(page, 1)
    big = page.locator(".jc-widget").nth(1)
    expect(big).to_have_attribute("data-state", "connected")

    texts = feed(big)
    expect(texts).to_have_count(5)
    for n in range(5):
        expect(texts.nth(n)).to_contain_text(f"big {n + 1} xxx")
    expect(big.locator(".jc-notice")).to_be_hidden()
    lab.post("calm:room", "text", {"text": "still here"})
    expect(feed(calm)).to_have_text(["still here"])
    expect(calm).to_have_attribute("data-state", "connected")


def test_outside_a_jupyter_page_the_widget_gets_its_endpoint_from_the_kernel(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    page = open_notebook(widget_cell("fallback:room"))
    # JupyterLab read its page config at start; the widget then finds none, as in VS Code.
    page.evaluate("document.getElementById('jupyter-config-data').id = 'moved-away'")
    widget = show_widget(page)
    # The kernel handed over its own endpoint: this page is the kernel identity.
    expect(widget.locator('.jc-avatar[data-kind="kernel"]')).to_have_count(1)
    lab.post("fallback:room", "text", {"text": "reached"})
    expect(feed(widget)).to_have_text(["reached"])


def test_the_widget_works_in_notebook_7(lab: Lab, open_notebook: OpenNotebook) -> None:
    page = open_notebook(widget_cell("nb7:room"), user="grace", app="notebook")
    widget = show_widget(page)
    expect(widget.locator(".jc-avatar")).to_have_text(["GH"])
    lab.post("nb7:room", "text", {"text": "hello Notebook 7"})
    expect(feed(widget)).to_have_text(["hello Notebook 7"])
    say(widget, "hi from Notebook 7")
    expect(feed(widget).last).to_have_text("hi from Notebook 7")


# -- untrusted content ------------------------------------------------------------------------

XSS_TEXT = '<img src=x onerror="window.__pwned=1">'
XSS_SOURCE = "</code><script>window.__pwned=2</script>"


def xss_cell(source: str) -> dict[str, Any]:
    return {
        "source": source,
        "language": 'python"><script>window.__pwned=3</script>',
        "execution_count": 1,
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "<b>not bold</b>\n"},
            {
                "output_type": "display_data",
                "data": {
                    "image/png": 'x" onerror="window.__pwned=4',
                    "text/plain": '<svg onload="window.__pwned=5">',
                },
                "metadata": {},
            },
            {
                "output_type": "execute_result",
                "execution_count": 1,
                "data": {"image/png": png(4, 4, lambda x, y: (200, 30, 30))},
                "metadata": {},
            },
            {"output_type": "display_data", "data": {"text/html": "<i>html</i>"}, "metadata": {}},
        ],
    }


def test_untrusted_text_and_cells_are_shown_as_text_and_never_run(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    topic = "xss:room"
    lab.post(topic, "text", {"text": XSS_TEXT})  # through the join's history
    lab.post(topic, "cell", xss_cell(XSS_SOURCE))
    page = open_notebook(widget_cell(topic))
    widget = show_widget(page)
    lab.post(topic, "text", {"text": XSS_TEXT})  # live
    lab.post(topic, "cell", xss_cell(XSS_SOURCE))
    lab.post(topic, "html", {"html": '<img src=x onerror="window.__pwned=6">'})

    expect(feed(widget)).to_have_text([XSS_TEXT, XSS_TEXT])
    expect(widget.locator(".jc-cell .jc-code")).to_have_text([XSS_SOURCE, XSS_SOURCE])
    expect(widget.locator(".jc-cell .jc-lang").first).to_have_text(
        'python"><script>window.__pwned=3</script>'
    )
    expect(widget.locator(".jc-stream").first).to_have_text("<b>not bold</b>\n")
    expect(widget.locator(".jc-plain").first).to_have_text('<svg onload="window.__pwned=5">')
    expect(widget.locator(".jc-json")).to_have_text(
        '{"html":"<img src=x onerror=\\"window.__pwned=6\\">"}'
    )
    # Only the valid base64 PNGs became images; wait until they have loaded, by when an
    # injected <img src=x> would have failed and run its onerror.
    images = widget.locator("img")
    expect(images).to_have_count(2)
    for src in images.evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        assert src.startswith("data:image/png;base64,iVBORw0KGgo")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jc-widget img')]"
        ".every(img => img.complete && img.naturalWidth === 4)"
    )
    # text/html is shown sanitized (js/sanitize.js): the <i> stays, as markup.
    expect(widget.locator(".jc-html i")).to_have_text(["html", "html"])
    assert widget.locator("script, svg, b, [onerror], [onload]").count() == 0
    assert page.evaluate("window.__pwned") is None


# -- sharing cells ----------------------------------------------------------------------------


def test_a_shared_cell_shows_in_another_widget_and_pastes_below_without_running(
    open_notebook: OpenNotebook,
) -> None:
    ada = open_notebook(
        widget_cell("share:room"),
        "%load_ext jupyter_channels",
        '%%share share:room\nprint("a printed line")\n6 * 7',
        "squares = [n * n for n in range(4)]\nsquares",
    )
    grace = open_notebook(
        widget_cell("share:room"), "%load_ext jupyter_channels\n%channels paste", user="grace"
    )
    at_ada, at_grace = show_widget(ada), show_widget(grace)

    run_cell(ada, 1)
    run_cell(ada, 2)
    expect(cell_output(ada, 2)).to_have_text(["a printed line\n", "42"])  # as without the magic
    shared = at_grace.locator(".jc-cell").first
    expect(shared.locator(".jc-code")).to_have_text('print("a printed line")\n6 * 7')
    expect(shared.locator(".jc-stream")).to_have_text("a printed line\n")
    expect(shared.locator(".jc-plain")).to_have_text("42")

    # Grace takes it into her notebook: a new cell below, holding exactly the code, not run.
    run_cell(grace, 1)
    cells = grace.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(3)
    expect(cells.nth(2).locator(".jp-InputArea-editor .cm-line")).to_have_text(
        ['print("a printed line")', "6 * 7"]
    )
    expect(cells.nth(2).locator(".jp-InputPrompt")).to_have_text("[ ]:")
    expect(cells.nth(2).locator(".jp-OutputArea-output")).to_have_count(0)

    # Ada shares an earlier cell through the widget's control.
    run_cell(ada, 3)
    expect(cell_output(ada, 3)).to_have_text("[0, 1, 4, 9]")
    at_ada.page.bring_to_front()
    at_ada.locator(".jc-share").click()
    at_ada.locator(".jc-picker-choice", has_text="squares = [n * n").click()
    from_control = at_grace.locator(".jc-cell").nth(1)
    expect(from_control.locator(".jc-code")).to_have_text(
        "squares = [n * n for n in range(4)]\nsquares"
    )
    expect(from_control.locator(".jc-plain")).to_have_text("[0, 1, 4, 9]")
