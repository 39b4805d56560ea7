"""A server restart loses nothing retained: the blocking client reconnects on its own,
rejoins with ``since``, and every send either returns an offset or raises."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest

import jupyter_channels as jc

from ..support import SpawnedServer, spawn, wait_until

#: Each send's timeout; the server stays down longer, so some sends time out.
SEND_TIMEOUT = 2.0


def server_offsets(server: SpawnedServer, topic: str) -> list[int]:
    """Every offset the server retains for ``topic``, oldest first, through REST."""
    offsets: list[int] = []
    while True:
        since = offsets[-1] if offsets else 0
        page = server.rest(
            "GET", f"api/channels/topics/{quote(topic, safe='')}/messages?since={since}&limit=500"
        )
        if not page["messages"]:
            return offsets
        offsets += [m["offset"] for m in page["messages"]]


class Publisher(threading.Thread):
    """Sends a message every ~20 ms and records what each send did: an offset, or the
    exception it raised."""

    def __init__(self, room: jc.Subscription) -> None:
        super().__init__(name="publisher", daemon=True)
        self.room = room
        self.attempts = 0
        self.outcomes: list[int | BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.attempts += 1
            try:
                self.outcomes.append(
                    self.room.send("tick", {"n": self.attempts}, timeout=SEND_TIMEOUT)
                )
            except BaseException as e:  # recorded; the test checks every one is a ChannelError
                self.outcomes.append(e)
            self.stopping.wait(0.02)

    def successes(self) -> list[int]:
        return [o for o in self.outcomes if isinstance(o, int)]


def test_a_subscriber_holds_every_retained_message_once_across_a_server_restart(tmp_path):
    topic = "chat:restart"
    history = tmp_path / "history.sqlite"
    first = spawn(tmp_path / "first", history).start()
    second = spawn(tmp_path / "second", history, port=first.port, token=first.token)
    try:
        with (
            jc.connect(first.http_url, first.token, max_backoff=0.5) as subscriber,
            jc.connect(first.http_url, first.token, max_backoff=0.5) as publishing,
        ):
            inbox = subscriber.join(topic)
            received: list[int | None] = []
            inbox.on("*", lambda message: received.append(message.offset))
            publisher = Publisher(publishing.join(topic))
            publisher.start()
            try:
                wait_until(lambda: len(publisher.successes()) >= 10)
                first.stop()
                before_restart = len(publisher.outcomes)
                time.sleep(SEND_TIMEOUT + 0.5)
                second.start()
                wait_until(
                    lambda: (
                        len([o for o in publisher.outcomes[before_restart:] if isinstance(o, int)])
                        >= 10
                    ),
                    timeout=30,
                )
            finally:
                publisher.stopping.set()
                publisher.join(30)
            assert not publisher.is_alive()

            stored = server_offsets(second, topic)
            wait_until(lambda: inbox.last_offset == stored[-1])
            # A round trip on the subscriber's connection: what was in flight came before it.
            inbox.history(limit=1)

            # Every retained message exactly once, in order, across the restart.
            assert received == stored == list(range(1, len(stored) + 1))
            assert [m.offset for m in inbox.messages] == stored
            assert subscriber.state == publishing.state == "connected"

            # No send vanished: each returned a stored offset or raised a ChannelError.
            assert len(publisher.outcomes) == publisher.attempts
            successes = publisher.successes()
            failures = [o for o in publisher.outcomes if not isinstance(o, int)]
            assert successes == sorted(set(successes))
            assert set(successes) <= set(stored)
            assert all(isinstance(e, jc.ChannelError) for e in failures), failures
            assert len(successes) + len(failures) == publisher.attempts
    finally:
        first.stop()
        second.stop()


def post(server: SpawnedServer, topic: str, payload: dict) -> int:
    """Publish through REST (the channel's handle_message, as the server's user)."""
    path = f"api/channels/topics/{quote(topic, safe='')}/messages"
    return server.rest("POST", path, {"subject": "text", "payload": payload})["offset"]


def hold_reconnect(conn: jc.Connection, monkeypatch) -> Callable[[], None]:
    """Make ``conn``'s reconnect attempts wait; returns the function that lets them go."""
    opened = asyncio.Event()
    aconn = conn._aconn
    connect = aconn._connect

    async def wait_then_connect():
        await opened.wait()
        return await connect()

    monkeypatch.setattr(aconn, "_connect", wait_then_connect)
    return lambda: conn._loop.call_soon_threadsafe(opened.set)


def test_a_server_back_with_a_new_history_delivers_its_messages_from_offset_one(
    tmp_path, monkeypatch
):
    topic = "chat:new-history"
    first = spawn(tmp_path / "first", tmp_path / "old.sqlite").start()
    second = spawn(tmp_path / "second", tmp_path / "new.sqlite", port=first.port, token=first.token)
    try:
        with jc.connect(first.http_url, first.token, max_backoff=0.5) as subscriber:
            inbox = subscriber.join(topic)
            received = []
            inbox.on("*", lambda message: received.append((message.offset, message.payload)))
            for n in range(5):
                post(first, topic, {"old": n})
            wait_until(lambda: len(received) == 5)

            release = hold_reconnect(subscriber, monkeypatch)
            first.stop()
            wait_until(lambda: subscriber.state == "reconnecting")
            second.start()
            # Published to the new history before the subscriber is back.
            assert [post(second, topic, {"new": n}) for n in range(2)] == [1, 2]
            release()
            wait_until(lambda: len(received) == 7)
            assert post(second, topic, {"new": 2}) == 3
            wait_until(lambda: len(received) == 8)

            assert received[5:] == [(1, {"new": 0}), (2, {"new": 1}), (3, {"new": 2})]
            assert inbox.last_offset == 3
    finally:
        first.stop()
        second.stop()


def test_a_server_back_with_another_token_ends_the_connection_with_unauthorized(tmp_path):
    first = spawn(tmp_path / "first", tmp_path / "history.sqlite").start()
    second = spawn(tmp_path / "second", tmp_path / "history.sqlite", port=first.port)
    assert second.token != first.token
    try:
        conn = jc.connect(first.http_url, first.token, max_backoff=0.2)
        inbox = conn.join("chat:token")
        first.stop()
        wait_until(lambda: conn.state == "reconnecting")
        second.start()

        wait_until(lambda: conn.state == "closed", timeout=30)
        assert not inbox.joined
        assert "403" in (inbox.close_reason or "")
        with pytest.raises(jc.ChannelError) as refused:
            inbox.send("text", {}, timeout=1)
        assert refused.value.code == "unavailable"  # closed: refused at once, no timeout
        conn.close()
    finally:
        first.stop()
        second.stop()
