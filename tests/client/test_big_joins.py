"""Joins whose replies are big: a truncated reply is completed with ``history`` pages,
and a join that keeps getting the connection closed (4008, slow consumer) is given up
after a few slower and slower tries, while the other topics rejoin. In-process server."""

from __future__ import annotations

import asyncio

import pytest

import jupyter_channels as jc
from jupyter_channels import Channel

from ..channels_fixture import CHANNELS
from ..support import await_until

#: Small enough that a test fills it quickly; every reply the server writes must fit.
MAX_QUEUED = 200_000
#: Well under max_message_size, five of them over MAX_QUEUED.
BIG = "x" * 90_000
BIG_TOPIC = "chat:big"


class FloodsOnRejoin(Channel):
    """Pushes more than the connection may queue to every join of a topic after the
    first: the rejoin after a reconnect always gets the connection closed with 4008."""

    def __init__(self, hub, pattern):
        super().__init__(hub, pattern)
        self.joins: dict[str, int] = {}

    def handle_joined(self, client, message):
        seen = self.joins[message.topic] = self.joins.get(message.topic, 0) + 1
        if seen > 1:
            return self.push(client, "flood", {"text": "x" * (2 * MAX_QUEUED)})
        return None

    async def handle_message(self, client, message):
        await self.rebroadcast(message)


@pytest.fixture
def channels_config():
    return {
        "channels": {**CHANNELS, "flood:*": f"{__name__}:FloodsOnRejoin"},
        "max_queued_bytes": MAX_QUEUED,
    }


async def drop_connections_of(channels_app, conn, bystanders) -> None:
    for client_id in set(channels_app.hub.clients) - bystanders:
        channels_app.hub.clients[client_id].disconnect("dropped by the test")
    await await_until(lambda: conn.state == "reconnecting")


async def test_a_rejoin_that_keeps_closing_the_connection_is_given_up_and_the_others_rejoin(
    server_url, server_token, channels_app
):
    async with jc.aconnect(server_url, server_token) as writer:
        outbox = await writer.join("chat:calm")
        bystanders = set(channels_app.hub.clients)
        async with jc.aconnect(server_url, server_token, max_backoff=1.0) as conn:
            flood = await conn.join("flood:rejoin")  # joined first, so rejoined first
            calm = await conn.join("chat:calm")
            received = []
            calm.on("*", lambda message: received.append(message.offset))
            connections = []
            opened = conn._connect

            async def counted():
                connections.append(conn._attempt)
                return await opened()

            conn._connect = counted
            await drop_connections_of(channels_app, conn, bystanders)

            await await_until(lambda: flood.state == "closed", timeout=30)
            assert "slow consumer" in (flood.close_reason or "")
            await await_until(lambda: calm.state == "joined", timeout=30)
            assert await outbox.send("text", {"text": "still here?"}) == 1
            await await_until(lambda: received == [1])
            # Two connections closed by the flood, then one that stays: no loop, and the
            # backoff kept growing across the closes instead of starting over each time.
            assert connections == [1, 2, 3]
            assert conn.state == "connected"
            assert calm.joined
            assert not flood.joined


async def publish_big(conn: jc.AsyncConnection, topic: str, n: int) -> list[int]:
    room = await conn.join(topic)
    return [await room.send("text", {"text": BIG, "n": i}) for i in range(n)]


async def test_a_truncated_join_reply_is_completed_with_history_pages(server_url, server_token):
    async with jc.aconnect(server_url, server_token) as writer:
        offsets = await publish_big(writer, BIG_TOPIC, 5)
        async with jc.aconnect(server_url, server_token) as reader:
            room = await reader.join(BIG_TOPIC, history=50)
            assert [m.offset for m in room.messages] == offsets
            assert reader.state == "connected"


async def test_a_rejoin_with_a_truncated_reply_delivers_every_missed_message_in_order(
    server_url, server_token, channels_app
):
    async with jc.aconnect(server_url, server_token) as writer:
        await publish_big(writer, BIG_TOPIC, 1)
        bystanders = set(channels_app.hub.clients)
        async with jc.aconnect(server_url, server_token, max_backoff=0.5) as reader:
            room = await reader.join(BIG_TOPIC)
            received = []
            room.on("*", lambda message: received.append(message.offset))
            opened = reader._connect
            gate = asyncio.Event()

            async def held():
                await gate.wait()
                return await opened()

            reader._connect = held
            await drop_connections_of(channels_app, reader, bystanders)
            missed = await publish_big(writer, BIG_TOPIC, 5)
            gate.set()
            await await_until(lambda: received == missed, timeout=30)
            assert room.recovered
            assert room.state == "joined"
