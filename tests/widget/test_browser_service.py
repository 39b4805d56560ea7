"""ChannelWidget pointed at a channels service from real JupyterLab, in real Chromium:
two people, each with their own service token, chat through the service.

The JupyterLab here hosts topics of its own; the widgets are given the service's URL
and a token, so both their sides go to the service instead. The page is on the lab's
origin, which the service allows (``c.ChannelsService.allow_origins``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..service_support import SpawnedService, token_of
from .conftest import Lab, OpenNotebook
from .test_browser import expect, feed, run_cell, say


def service_for(lab: Lab, root: Path) -> SpawnedService:
    """A service that lets pages of ``lab`` open browser connections."""
    origin = lab.url.rstrip("/")
    return SpawnedService(root, config=f"c.ChannelsService.allow_origins = [{origin!r}]")


@pytest.fixture(scope="module")
def service(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedService]:
    started = service_for(lab, tmp_path_factory.mktemp("service")).start()
    try:
        yield started
    finally:
        started.stop()


def widget_at(service: SpawnedService, topic: str, user: str) -> str:
    return (
        "from jupyter_channels import ChannelWidget\n"
        f"w = ChannelWidget({topic!r}, url={service.http_url!r}, token={token_of(user)!r})\nw"
    )


def chat(service: SpawnedService, topic: str, pages: dict[str, Any], lines: list[Any]) -> None:
    """Show the widget of each user's page; each ``(user, text)`` of ``lines`` is said in
    turn and reaches every widget; the service stored each under its speaker."""
    widgets = {}
    for user, page in pages.items():
        run_cell(page, 0)
        widgets[user] = page.locator(".jc-widget")
        expect(widgets[user]).to_have_attribute("data-state", "connected")
    said: list[str] = []
    for user, text in lines:
        say(widgets[user], text)
        said.append(text)
        for widget in widgets.values():
            expect(feed(widget)).to_have_text(said)
    stored = service.rest("GET", f"api/channels/topics/{topic}/messages")["messages"]
    assert [(m["from"]["user"], m["payload"]["text"]) for m in stored] == lines


def test_two_widgets_given_a_service_url_and_their_own_tokens_chat_through_the_service(
    lab: Lab, service: SpawnedService, open_notebook: OpenNotebook
) -> None:
    topic = "svc:widgets"
    pages = {
        user: open_notebook(widget_at(service, topic, user), user=user) for user in ("ada", "grace")
    }

    chat(service, topic, pages, [("ada", "hello from ada"), ("grace", "hello from grace")])

    assert lab.messages(topic) == []  # nothing went through the lab's own channels
