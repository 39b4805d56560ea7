"""The asyncio client against the in-process server: ``async for``, ``on`` as a decorator,
and reconnecting after the server dropped the connection (rejoin with ``since``, dedupe
by offset, the bounded buffer of requests made while disconnected)."""

from __future__ import annotations

import asyncio

import pytest

import jupyter_channels as jc
from jupyter_channels import AsyncSubscription, Channel

from ..channels_fixture import CHANNELS
from ..support import await_until


@pytest.fixture
def gated(monkeypatch):
    """``gated(conn)`` makes ``conn``'s reconnect attempts wait until the returned
    event is set, so the test decides what happens while it is disconnected."""

    def gate(conn: jc.AsyncConnection) -> asyncio.Event:
        opened = asyncio.Event()
        connect = conn._connect

        async def wait_then_connect():
            await opened.wait()
            return await connect()

        monkeypatch.setattr(conn, "_connect", wait_then_connect)
        return opened

    return gate


async def drop_every_connection(channels_app, conn) -> None:
    """The server drops every connection; returns once ``conn`` is reconnecting."""
    for client in list(channels_app.hub.clients.values()):
        client.disconnect("dropped by the test")
    await await_until(lambda: conn.state == "reconnecting")


async def test_async_for_yields_each_message_in_offset_order(server_url, server_token):
    async with jc.aconnect(server_url, server_token) as conn:
        room = await conn.join("chat:iterate")
        received = aiter(room)
        offsets = [await room.send("text", {"n": n}) for n in range(3)]
        got = [await asyncio.wait_for(anext(received), 10) for _ in range(3)]
        assert [m.offset for m in got] == offsets == [1, 2, 3]
        assert [m.payload for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert all(m.topic == "chat:iterate" and m.subject == "text" for m in got)


async def test_async_for_ends_when_the_subscription_is_left(server_url, server_token):
    async with jc.aconnect(server_url, server_token) as conn:
        room = await conn.join("chat:leaving")

        async def read_all():
            return [message.payload async for message in room]

        reader = asyncio.ensure_future(read_all())
        await asyncio.sleep(0)  # let the reader start iterating before the send
        await room.send("text", {"last": True})
        await await_until(lambda: len(room.messages) == 1)
        await room.leave()
        assert await asyncio.wait_for(reader, 10) == [{"last": True}]
        assert not room.joined


async def test_on_used_as_a_decorator_registers_the_function_for_its_subject(
    server_url, server_token
):
    async with jc.aconnect(server_url, server_token) as conn:
        room = await conn.join("chat:decorated")
        texts = []
        everything = []

        @room.on("text")
        def on_text(message):
            texts.append(message.payload["text"])

        @room.on("*")
        async def on_anything(message):
            everything.append(message.subject)

        assert callable(on_text)
        assert asyncio.iscoroutinefunction(on_anything)  # returned unchanged

        await room.send("text", {"text": "hello"})
        await room.send("cell", {"source": "1 + 1"})
        await room.send("text", {"text": "bye"})
        await await_until(lambda: len(everything) == 3)
        assert texts == ["hello", "bye"]
        assert everything == ["text", "cell", "text"]


async def test_a_failing_callback_does_not_stop_delivery(server_url, server_token):
    async with jc.aconnect(server_url, server_token) as conn:
        room = await conn.join("chat:failing-callback")
        seen = []

        @room.on("text")
        def broken(message):
            raise RuntimeError("a bug in user code")

        room.on("text", lambda message: seen.append(message.offset))
        await room.send("text", {})
        await room.send("text", {})
        await await_until(lambda: len(seen) == 2)
        assert seen == [1, 2]


async def test_messages_sent_while_disconnected_arrive_exactly_once_after_the_reconnect(
    server_url, server_token, channels_app, gated
):
    topic = "chat:reconnect"
    async with (
        jc.aconnect(server_url, server_token, max_backoff=0.2) as reader,
        jc.aconnect(server_url, server_token) as writer,
    ):
        inbox = await reader.join(topic)
        outbox = await writer.join(topic)
        received = []
        inbox.on("*", lambda message: received.append((message.offset, message.payload)))
        for n in range(3):
            await outbox.send("text", {"n": n})
        await await_until(lambda: len(received) == 3)

        opened = gated(reader)
        writer_id = inbox.messages[-1].sender["id"]
        hub = channels_app.hub
        for client in [c for c in hub.clients.values() if c.id != writer_id]:
            client.disconnect("dropped by the test")
        await await_until(lambda: reader.state == "reconnecting")

        missed = [await outbox.send("text", {"n": n}) for n in range(3, 6)]
        assert missed == [4, 5, 6]
        assert len(received) == 3  # nothing reaches a disconnected reader

        opened.set()
        await await_until(lambda: len(received) == 6)
        assert reader.state == "connected"
        assert inbox.recovered
        assert await outbox.send("text", {"n": 6}) == 7
        await await_until(lambda: len(received) == 7)

        # A round trip on the reader's connection: anything still in flight came before it.
        await inbox.history(limit=1)
        assert received == [(n + 1, {"n": n}) for n in range(7)]
        assert [m.offset for m in inbox.messages] == list(range(1, 8))
        assert inbox.last_offset == 7


async def test_a_rejoin_does_not_replay_history_the_join_did_not_ask_for(
    server_url, server_token, channels_app
):
    topic = "chat:no-replay"
    async with (
        jc.aconnect(server_url, server_token, max_backoff=0.2) as reader,
        jc.aconnect(server_url, server_token) as writer,
    ):
        outbox = await writer.join(topic)
        for n in range(3):
            await outbox.send("text", {"n": n})
        inbox = await reader.join(topic)  # history=0: nothing old wanted
        assert inbox.last_offset == 3
        received = []
        inbox.on("*", lambda message: received.append(message.offset))

        await drop_every_connection(channels_app, reader)
        await await_until(lambda: reader.state == writer.state == "connected")
        assert await outbox.send("text", {"n": 3}) == 4
        await await_until(lambda: received == [4])


async def test_a_send_made_while_disconnected_is_buffered_and_sent_after_the_rejoin(
    server_url, server_token, channels_app, gated
):
    topic = "chat:buffered"
    async with jc.aconnect(server_url, server_token, max_backoff=0.2) as conn:
        room = await conn.join(topic)
        opened = gated(conn)
        await drop_every_connection(channels_app, conn)

        pending = asyncio.ensure_future(room.send("text", {"text": "written offline"}))
        await asyncio.sleep(0.1)
        assert not pending.done()  # it waits for the connection, not failing at once
        opened.set()
        assert await asyncio.wait_for(pending, 10) == 1
        await await_until(lambda: len(room.messages) == 1)
        assert room.messages[0].payload == {"text": "written offline"}


async def test_the_buffer_of_requests_made_while_disconnected_is_bounded(
    server_url, server_token, channels_app, gated
):
    async with jc.aconnect(server_url, server_token, max_buffered=2) as conn:
        room = await conn.join("chat:bounded")
        opened = gated(conn)
        await drop_every_connection(channels_app, conn)

        waiting = [asyncio.ensure_future(room.send("text", {"n": n})) for n in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(jc.ChannelError) as info:
            await room.send("text", {"n": 2})
        assert info.value.code == "unavailable"

        opened.set()
        assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [1, 2]


async def test_a_buffered_request_that_timed_out_is_never_sent_later(
    server_url, server_token, channels_app, gated
):
    topic = "chat:expired"
    async with jc.aconnect(server_url, server_token, max_backoff=0.2) as conn:
        room = await conn.join(topic)
        opened = gated(conn)
        await drop_every_connection(channels_app, conn)

        with pytest.raises(jc.ReplyTimeout):
            await room.send("text", {"text": "too late"}, timeout=0.2)
        opened.set()
        assert await room.send("text", {"text": "on time"}) == 1
        history = await room.history()
        assert [m.payload for m in history] == [{"text": "on time"}]


async def test_messages_keeps_the_newest_max_messages_while_callbacks_see_all(
    server_url, server_token
):
    async with jc.aconnect(server_url, server_token, max_messages=3) as conn:
        room = await conn.join("chat:bounded-messages")
        seen = []
        room.on("*", lambda message: seen.append(message.offset))
        for n in range(5):
            await room.send("text", {"n": n})
        await await_until(lambda: len(seen) == 5)
        assert [m.offset for m in room.messages] == [3, 4, 5]
        assert seen == [1, 2, 3, 4, 5]


def test_a_message_whose_offset_was_already_seen_is_not_delivered_again():
    # Pure: no server. A rejoin reply that overlaps what arrived live must not repeat it.
    sub = AsyncSubscription(jc.aconnect("http://127.0.0.1:9/", "t"), "chat:dedupe", {}, 10)
    seen = []
    sub.on("*", lambda message: seen.append(message.offset))
    for offset in [1, 2, 2, 1, None, 3, 3]:
        sub._deliver({"topic": "chat:dedupe", "subject": "text", "payload": {}, "offset": offset})
    assert seen == [1, 2, None, 3]  # a push (no offset) is never a duplicate
    assert sub.last_offset == 3


class FailsOnRejoin(Channel):
    """Lets each topic be joined once; a second join fails in the hook (internal_error),
    like a channel whose backing service went away while the client was disconnected."""

    def __init__(self, hub, pattern):
        super().__init__(hub, pattern)
        self.joined: set[str] = set()

    def handle_joined(self, client, message):
        if message.topic in self.joined:
            raise RuntimeError("the channel's backing service is down")
        self.joined.add(message.topic)

    async def handle_message(self, client, message):
        await self.rebroadcast(message)


@pytest.fixture
def channels_config():
    return {"channels": {**CHANNELS, "flaky:*": f"{__name__}:FailsOnRejoin"}}


async def test_a_topic_whose_rejoin_fails_does_not_keep_the_other_topics_from_rejoining(
    server_url, server_token, channels_app, gated
):
    async with jc.aconnect(server_url, server_token) as writer:
        outbox = await writer.join("chat:steady")
        bystanders = set(channels_app.hub.clients)
        async with jc.aconnect(server_url, server_token, max_backoff=0.2) as conn:
            flaky = await conn.join("flaky:reconnect")  # joined first, so rejoined first
            steady = await conn.join("chat:steady")
            received = []
            steady.on("*", lambda message: received.append(message.offset))
            opened = gated(conn)
            for client_id in set(channels_app.hub.clients) - bystanders:
                channels_app.hub.clients[client_id].disconnect("dropped by the test")
            await await_until(lambda: conn.state == "reconnecting")
            opened.set()
            await await_until(lambda: not flaky.joined)

            assert await outbox.send("text", {"text": "still listening?"}) == 1
            await await_until(lambda: received == [1])
            assert flaky.close_reason == "the channel failed to handle this"
            assert steady.joined


async def test_a_join_made_while_reconnecting_waits_for_the_same_connection(
    server_url, server_token, channels_app, gated
):
    async with jc.aconnect(server_url, server_token) as writer:
        outbox = await writer.join("chat:late")
        for n in range(3):
            await outbox.send("text", {"n": n})
        bystanders = set(channels_app.hub.clients)
        async with jc.aconnect(server_url, server_token, max_backoff=0.2) as conn:
            await conn.join("chat:early")
            opened = gated(conn)
            for client_id in set(channels_app.hub.clients) - bystanders:
                channels_app.hub.clients[client_id].disconnect("dropped by the test")
            await await_until(lambda: conn.state == "reconnecting")

            joining = asyncio.ensure_future(conn.join("chat:late", history=1))
            await asyncio.sleep(0.1)
            opened.set()
            late = await asyncio.wait_for(joining, 10)

            # One connection, not a second one opened beside the reconnect.
            await await_until(lambda: conn.state == "connected")
            assert len(set(channels_app.hub.clients) - bystanders) == 1
            # It got what it asked for: the newest message, not the whole history.
            assert [m.payload for m in late.messages] == [{"n": 2}]
