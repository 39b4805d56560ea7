"""Gapless recovery after a reconnect, retention, and history across a server restart,
on every host (tests/hosts.py)."""

from __future__ import annotations

import pytest

from .hosts import each_spawned_host, spawn

pytestmark = pytest.mark.on_every_host


@pytest.fixture
def channels_config():
    # One presence diff per join and leave: the tests read every frame in order.
    return {"history_size": 50, "presence_interval": 0}


async def test_rejoin_with_since_gets_exactly_the_missed_messages(channels_ws):
    reader = await channels_ws()
    writer = await channels_ws()
    await reader.join("chat:recovery")
    await writer.join("chat:recovery")
    for i in range(5):
        await writer.publish("chat:recovery", "text", {"i": i})
    seen = await reader.messages(5, "chat:recovery")
    assert [m["offset"] for m in seen] == [1, 2, 3, 4, 5]
    reader.close()

    for i in range(5, 8):
        await writer.publish("chat:recovery", "text", {"i": i})

    back = await channels_ws()
    response = await back.join("chat:recovery", since=5)
    assert response["recovered"] is True
    assert response["offset"] == 8
    assert [m["offset"] for m in response["messages"]] == [6, 7, 8]
    assert [m["payload"]["i"] for m in response["messages"]] == [5, 6, 7]

    # Live messages follow without a gap or a duplicate.
    await writer.publish("chat:recovery", "text", {"i": 8})
    (live,) = await back.messages(1, "chat:recovery")
    assert live["offset"] == 9
    await back.silent()


async def test_a_since_older_than_retention_is_not_recovered(channels_ws):
    client = await channels_ws()
    await client.join("chat:retention")
    for i in range(55):
        await client.publish("chat:retention", "text", {"i": i})

    late = await channels_ws()
    response = await late.join("chat:retention", since=2)
    assert response["recovered"] is False
    assert response["offset"] == 55
    # Exactly the newest history_size are retained, and that is what comes back.
    assert [m["offset"] for m in response["messages"]] == list(range(6, 56))


async def test_join_with_history_returns_the_newest_messages(channels_ws):
    client = await channels_ws()
    await client.join("chat:history")
    for i in range(4):
        await client.publish("chat:history", "text", {"i": i})
    other = await channels_ws()
    response = await other.join("chat:history", history=2)
    assert [m["offset"] for m in response["messages"]] == [3, 4]
    assert response["recovered"] is True


async def test_messages_published_during_a_join_arrive_once_and_in_order(channels_ws):
    writer = await channels_ws()
    await writer.join("chat:race")
    readers = [await channels_ws() for _ in range(5)]
    refs = []
    # Fewer than history_size (50): every message is still retained when the last join reads,
    # so each join recovers from offset 1 however far the writer has got.
    sent = 45
    for i in range(sent):
        # Fire publishes without waiting while readers join with since=0.
        await writer.send(
            {"event": "message", "topic": "chat:race", "subject": "n", "payload": i, "ref": f"r{i}"}
        )
        refs.append(f"r{i}")
        if i % 9 == 0:
            reader = readers[i // 9]
            await reader.send({"event": "join", "topic": "chat:race", "since": 0, "ref": "j"})
    for ref in refs:
        await writer.expect("reply", ref=ref)
    for reader in readers:
        reply = await reader.expect("reply", ref="j")
        got = [m["offset"] for m in reply["payload"]["response"]["messages"]]
        last = reply["payload"]["response"]["offset"]
        assert reply["payload"]["response"]["recovered"] is True, reply
        got += [m["offset"] for m in await reader.messages(sent - last, "chat:race")]
        assert got == list(range(1, sent + 1)), reply
        # Nothing more of the topic's messages: no duplicate. (The other readers' joins
        # may still be announced by presence, at any time.)
        late = await reader.drain(timeout=0.2)
        assert [f for f in late if f.get("event") == "message"] == [], late


@each_spawned_host
async def test_history_survives_a_server_restart_with_the_same_offsets(tmp_path, host):
    history = tmp_path / "history.sqlite"
    first = spawn(host, tmp_path / "one", history).start()
    try:
        client = await first.connect()
        join = await client.join("chat:durable")
        epoch = join["epoch"]
        offsets = [await client.publish("chat:durable", "text", {"i": i}) for i in range(5)]
        assert offsets == [1, 2, 3, 4, 5]
        client.close()
    finally:
        first.stop()

    second = spawn(host, tmp_path / "two", history).start()
    try:
        client = await second.connect()
        join = await client.join("chat:durable", since=0)
        assert join["epoch"] == epoch
        assert join["offset"] == 5
        assert [m["payload"]["i"] for m in join["messages"]] == [0, 1, 2, 3, 4]
        assert await client.publish("chat:durable", "text", {"i": 5}) == 6
    finally:
        second.stop()
