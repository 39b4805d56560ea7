"""ChannelWidget in real JupyterLab and Chromium under topic permissions: a refused join
is a line in the widget's header, and a topic the user may only read has its input box
disabled while a teacher's is not.

This module's ``lab`` replaces the session's: a JupyterLab with permissions of its own.
The test users: ada (group ``red``), grace (group ``teachers``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import SCREENSHOTS, Lab, OpenNotebook
from .test_browser import expect, feed, run_cell, say, widget_cell

RULES = [
    {"topic": "announce:*", "join": "*", "send": "@teachers"},
    {"topic": "user:{user}:*", "join": "{user}", "send": "*"},
    {"topic": "*", "join": "*", "send": "*"},
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab-permissions"))
    server.configure({"ChannelsApp": {"permissions": RULES}}).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_refused_join_is_a_header_line_and_a_read_only_topic_disables_the_input(
    lab: Lab, open_notebook: OpenNotebook
) -> None:
    page = open_notebook(widget_cell("announce:class"), widget_cell("user:grace:inbox"))
    run_cell(page, 0)
    announce = page.locator(".jc-widget").nth(0)
    expect(announce).to_have_attribute("data-state", "connected")
    # ada may read the announcements but not send to them.
    expect(announce).to_have_attribute("data-readonly", "true")
    expect(announce.locator(".jc-input")).to_be_disabled()
    expect(announce.locator(".jc-send")).to_be_disabled()
    expect(announce.locator(".jc-readonly")).to_have_text("read-only")
    expect(announce.locator(".jc-refusal")).to_be_hidden()
    lab.post("announce:class", "text", {"text": "exam on friday"}, user="grace")
    expect(feed(announce)).to_have_text(["exam on friday"])

    run_cell(page, 1)
    inbox = page.locator(".jc-widget").nth(1)
    expect(inbox.locator(".jc-refusal")).to_have_text(
        "cannot join user:grace:inbox (unauthorized): not allowed to join 'user:grace:inbox' "
        "(rule 2: topic 'user:{user}:*', join '{user}')"
    )
    expect(inbox.locator(".jc-input")).to_be_disabled()
    expect(inbox.locator(".jc-notice")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "widget-permissions.png"))

    # A teacher's widget on the same topic sends, and ada's shows it.
    teacher = open_notebook(widget_cell("announce:class"), user="grace")
    run_cell(teacher, 0)
    theirs = teacher.locator(".jc-widget")
    expect(theirs).to_have_attribute("data-state", "connected")
    expect(theirs).to_have_attribute("data-readonly", "false")
    expect(theirs.locator(".jc-readonly")).to_be_hidden()
    say(theirs, "bring a pencil")
    expect(feed(announce)).to_have_text(["exam on friday", "bring a pencil"])
