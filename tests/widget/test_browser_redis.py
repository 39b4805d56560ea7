"""ChannelWidget in real JupyterLab and Chromium, on a server whose broker is a real Redis:
a rejoin that gets ``unavailable`` while Redis is down shows as retrying and succeeds by
itself once Redis is back.

This module's ``lab`` replaces the session's: a JupyterLab on Redis of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..redis_support import RedisServer
from .conftest import Lab, OpenNotebook
from .relay import TcpRelay
from .test_browser import expect, feed, show_widget, widget_cell


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # Persistent: when it comes back, the topic's offsets and epoch are still there.
    server = RedisServer(tmp_path_factory.mktemp("redis"), persistent=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab-redis"))
    server.configure({"ChannelsApp": {"broker_url": redis.url()}}).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_rejoin_while_redis_is_down_shows_retrying_and_joins_once_redis_is_back(
    lab: Lab, redis: RedisServer, open_notebook: OpenNotebook
) -> None:
    with TcpRelay(lab.port) as relay:
        page = open_notebook(widget_cell("retry:room"), port=relay.port)
        widget = show_widget(page)
        lab.post("retry:room", "text", {"text": "before"})
        expect(feed(widget)).to_have_text(["before"])

        redis.stop()
        relay.cut()
        relay.restore()
        # Connected again, but the rejoin got "unavailable": the topic is not joined yet.
        expect(widget).to_have_attribute("data-state", "retrying")
        expect(widget.locator(".jc-state-text")).to_have_text("retrying")
        expect(widget.locator(".jc-notice")).to_contain_text("cannot rejoin retry:room")

        redis.start()
        expect(widget).to_have_attribute("data-state", "connected")
        expect(widget.locator(".jc-notice")).to_be_hidden()
        lab.post("retry:room", "text", {"text": "after"})
        expect(feed(widget)).to_have_text(["before", "after"])
