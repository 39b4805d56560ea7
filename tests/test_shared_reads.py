"""Joins arriving together for the same page share one history read (a reconnect storm:
everyone rejoins with the same ``since``), and each still gets every message once."""

from __future__ import annotations

import asyncio
import json

import pytest

from jupyter_channels.brokers.local import LocalBroker
from jupyter_channels.channel import RebroadcastChannel, Router
from jupyter_channels.constants import Kind
from jupyter_channels.history.sqlite import SqliteHistory
from jupyter_channels.hub import Hub, Limits

from .test_connection import ALICE, FakeTransport, received

TOPIC = "room"


@pytest.fixture
def hub(jp_asyncio_loop):
    router = Router()
    hub = Hub(router, LocalBroker(SqliteHistory(":memory:", 100)), Limits(presence_interval=0))
    router.add("*", RebroadcastChannel(hub, "*"))
    jp_asyncio_loop.run_until_complete(hub.ensure_started())
    yield hub
    jp_asyncio_loop.run_until_complete(hub.stop())


def join_replies(transport: FakeTransport) -> list[dict]:
    return [f for f in received(transport) if f["event"] == "reply" and f["ref"] == "j"]


async def test_joins_with_the_same_since_at_once_are_answered_from_one_read(hub):
    for n in range(5):
        await hub.publish(TOPIC, "text", {"n": n})
    transports = [FakeTransport(synchronous=True) for _ in range(20)]
    clients = [hub.connect(f"c{i}", ALICE, Kind.BROWSER, t) for i, t in enumerate(transports)]
    reads = hub.shared_reads.reads
    join = json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "since": 2})

    await asyncio.gather(*(hub.receive(client, join) for client in clients))
    await asyncio.sleep(0)

    assert hub.shared_reads.reads == reads + 1
    for transport in transports:
        (reply,) = join_replies(transport)
        response = reply["payload"]["response"]
        assert [m["offset"] for m in response["messages"]] == [3, 4, 5]
        assert response["recovered"] is True


async def test_joins_for_different_pages_are_read_apart(hub):
    for n in range(5):
        await hub.publish(TOPIC, "text", {"n": n})
    transports = [FakeTransport(synchronous=True) for _ in range(2)]
    clients = [hub.connect(f"c{i}", ALICE, Kind.BROWSER, t) for i, t in enumerate(transports)]
    reads = hub.shared_reads.reads

    await asyncio.gather(
        *(
            hub.receive(
                client, json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "since": since})
            )
            for client, since in zip(clients, (1, 4), strict=True)
        )
    )

    assert hub.shared_reads.reads == reads + 2
    offsets = [
        [m["offset"] for m in join_replies(t)[0]["payload"]["response"]["messages"]]
        for t in transports
    ]
    assert offsets == [[2, 3, 4, 5], [5]]
