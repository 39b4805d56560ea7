"""The server on a shared broker: what other servers do shows here.

The in-process server runs on Redis; "another server" is a second
``RedisBroker`` in this process on the same database, publishing and tracking
members as a server would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jupyter_channels.history import Draft
from jupyter_channels.presence import make_meta

pytestmark = pytest.mark.parametrize("broker_url", ["redis"], indirect=True)

GRACE_SENDER = '{"id":"g1","user":"grace","name":"Grace Hopper","kind":"browser"}'


@pytest.fixture
def other_server(broker_url, jp_asyncio_loop):
    """A second server's broker on the same Redis, started."""
    from jupyter_channels.brokers.redis import RedisBroker

    broker = RedisBroker(broker_url, 1000)
    jp_asyncio_loop.run_until_complete(broker.start())
    yield broker
    jp_asyncio_loop.run_until_complete(broker.stop())


def grace(conn_id: str = "g1") -> dict[str, Any]:
    return make_meta(conn_id, "browser", "Grace Hopper", "GH", "#3f51b5", 1_700_000_000_000)


async def get(jp_fetch, *path: str) -> Any:
    response = await jp_fetch("api", "channels", *path)
    return json.loads(response.body)


async def test_members_of_another_server_join_leave_and_are_listed_here(
    channels_ws, other_server, jp_fetch
):
    ada = await channels_ws()
    await ada.join("chat:shared")

    other_server.track("chat:shared", "grace", grace())
    joined = await ada.expect("presence_diff", topic="chat:shared")
    assert joined["payload"] == {"joins": {"grace": {"metas": [grace()]}}, "leaves": {}}
    assert set(await get(jp_fetch, "topics", "chat:shared", "presence")) == {"ada", "grace"}
    late = await channels_ws()
    await late.send({"event": "join", "topic": "chat:shared"})
    state = await late.expect("presence_state", topic="chat:shared")
    assert set(state["payload"]) == {"ada", "grace"}

    other_server.untrack("chat:shared", "g1")
    left = await ada.expect("presence_diff", topic="chat:shared")
    while "grace" not in left["payload"]["leaves"]:  # the late joiner's own diff comes first
        left = await ada.expect("presence_diff", topic="chat:shared")
    assert left["payload"] == {"joins": {}, "leaves": {"grace": {"metas": [grace()]}}}


async def test_topics_with_members_only_on_another_server_are_listed(other_server, jp_fetch):
    other_server.track("chat:elsewhere", "grace", grace())

    listed: list[Any] = []

    async def listing() -> bool:
        listed[:] = await get(jp_fetch, "topics")
        return bool(listed)

    for _ in range(200):
        if await listing():
            break
        await asyncio.sleep(0.02)
    assert listed == [{"topic": "chat:elsewhere", "members": 1, "offset": 0}]
    presence = await get(jp_fetch, "topics", "chat:elsewhere", "presence")
    assert presence == {"grace": {"metas": [grace()]}}


async def test_a_message_another_server_publishes_reaches_clients_here(channels_ws, other_server):
    ada = await channels_ws()
    await ada.join("chat:shared")
    await ada.publish("chat:shared", "text", {"from": "here"})

    stored = await other_server.publish(
        Draft("chat:shared", "text", '{"from":"there"}', GRACE_SENDER)
    )

    here, there = await ada.messages(2, "chat:shared")
    assert (here["offset"], there["offset"]) == (1, stored.offset) == (1, 2)
    assert there["from"]["user"] == "grace"
    assert there["payload"] == {"from": "there"}


async def test_when_redis_loses_its_history_subscribers_are_closed_to_rejoin(
    channels_ws, other_server, redis_server
):
    ada = await channels_ws()
    joined = await ada.join("chat:lost")
    await ada.publish("chat:lost", "text", {})
    await ada.publish("chat:lost", "text", {})

    redis_server.client().flushdb()  # what Redis restarted without persistence looks like
    await other_server.publish(Draft("chat:lost", "text", "{}", GRACE_SENDER))

    assert await ada.closed() == "closed: 1012 history lost: rejoin"
    back = await channels_ws()
    rejoined = await back.join("chat:lost", since=2)
    assert rejoined["recovered"] is False
    assert rejoined["epoch"] != joined["epoch"]
    assert [m["offset"] for m in rejoined["messages"]] == [1]
