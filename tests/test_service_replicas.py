"""Replicas: two ``jupyter channels serve`` processes share topics, offsets, history and
presence through one real Redis (``--ChannelsApp.broker_url=redis://...``).

Ada is connected to replica A, Grace to replica B; each test uses its own topics.
"""

from __future__ import annotations

import pytest

from .service_support import SpawnedService, started_together, token_of
from .support import ChannelsClient


@pytest.fixture(scope="module")
def replicas(redis_server, tmp_path_factory):
    """Replicas A and B on the session's Redis (emptied first), started together."""
    redis_server.client().flushdb()
    root = tmp_path_factory.mktemp("replicas")

    pair = (
        SpawnedService(root / name, broker_url=redis_server.url(), presence_interval=0)
        for name in ("a", "b")
    )
    with started_together(*pair) as started:
        yield started


def stored(frames: list[dict]) -> list[tuple]:
    """What two subscribers must agree on: each message's offset, sender and payload."""
    return [(f["offset"], f["from"]["user"], f["payload"]) for f in frames]


async def ada_on_a_and_grace_on_b(replicas, topic: str) -> tuple[ChannelsClient, ...]:
    """Ada connected to replica A and Grace to replica B, both joined to ``topic``."""
    ada = await replicas[0].connect("ada")
    grace = await replicas[1].connect("grace")
    await ada.join(topic)
    await grace.join(topic)
    return ada, grace


async def test_clients_on_two_replicas_exchange_messages_with_identical_offsets(replicas):
    a, b = replicas
    topic = "chat:replicas"
    ada, grace = await ada_on_a_and_grace_on_b(replicas, topic)

    acked = []
    for n in range(6):
        sender = ada if n % 2 == 0 else grace
        acked.append(await sender.publish(topic, "n", {"n": n}))

    seen_on_a = await ada.messages(6, topic)
    seen_on_b = await grace.messages(6, topic)
    assert acked == [1, 2, 3, 4, 5, 6]
    assert stored(seen_on_a) == stored(seen_on_b)
    assert [user for _, user, _ in stored(seen_on_a)] == ["ada", "grace"] * 3
    page_a = a.rest("GET", f"api/channels/topics/{topic}/messages")
    page_b = b.rest("GET", f"api/channels/topics/{topic}/messages", token=token_of("grace"))
    assert page_a == page_b
    assert stored(page_a["messages"]) == stored(seen_on_a)
    await ada.silent()
    await grace.silent()


async def test_presence_on_either_replica_lists_the_members_of_both(replicas):
    a, b = replicas
    topic = "chat:who-is-here"
    ada = await a.connect("ada")
    await ada.join(topic)
    grace = await b.connect("grace")

    reply = await grace.request({"event": "join", "topic": topic})
    state = await grace.expect("presence_state", topic=topic)
    joins = await ada.expect("presence_diff", topic=topic)
    grace.close()
    leaves = await ada.expect("presence_diff", topic=topic)

    assert reply["payload"]["status"] == "ok"
    assert sorted(state["payload"]) == ["ada", "grace"]
    assert list(joins["payload"]["joins"]) == ["grace"]
    assert list(leaves["payload"]["leaves"]) == ["grace"]
    assert list(a.rest("GET", f"api/channels/topics/{topic}/presence")) == ["ada"]
    assert list(b.rest("GET", f"api/channels/topics/{topic}/presence")) == ["ada"]


async def test_the_rest_presence_of_each_replica_lists_the_members_of_both(replicas):
    a, b = replicas
    topic = "chat:rest-presence"
    ada, _grace = await ada_on_a_and_grace_on_b(replicas, topic)  # both stay connected
    await ada.expect("presence_diff", topic=topic)

    on_a = a.rest("GET", f"api/channels/topics/{topic}/presence")
    on_b = b.rest("GET", f"api/channels/topics/{topic}/presence")

    assert sorted(on_a) == sorted(on_b) == ["ada", "grace"]
    assert on_a["grace"]["metas"] == on_b["grace"]["metas"]


async def test_a_client_moving_to_the_other_replica_recovers_with_since_without_gap_or_duplicate(
    replicas,
):
    a, b = replicas
    topic = "chat:move"
    writer = await b.connect("grace")
    await writer.join(topic)
    ada = await a.connect("ada")
    await ada.join(topic)
    for n in range(3):
        await writer.publish(topic, "n", {"n": n})
    last = (await ada.messages(3, topic))[-1]["offset"]
    ada.close()

    missed = [await writer.publish(topic, "n", {"n": n}) for n in range(3, 6)]
    moved = await b.connect("ada")
    response = await moved.join(topic, since=last)
    await writer.publish(topic, "n", {"n": 6})
    (live,) = await moved.messages(1, topic)

    assert (last, missed) == (3, [4, 5, 6])
    assert response["recovered"] is True
    assert [(m["offset"], m["payload"]["n"]) for m in response["messages"]] == [
        (4, 3),
        (5, 4),
        (6, 5),
    ]
    assert (live["offset"], live["payload"]["n"]) == (7, 6)
    await moved.silent()
