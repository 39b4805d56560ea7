"""One conformance suite for every Broker: delivery, acknowledgement, presence, faults.

Adding a broker is one more entry in ``KINDS``. Brokers whose servers share
topics (``shared``) also run the tests of several servers: here several broker
instances in this process on the same backend, each standing for one server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_channels.brokers import Broker
from jupyter_channels.brokers.local import LocalBroker
from jupyter_channels.history import Draft, SqliteHistory, StoredMessage, StoreUnavailable
from jupyter_channels.presence import State, make_meta
from jupyter_channels.protocol import dumps

from ..redis_support import RedisServer
from ..support import await_until, with_needs

HISTORY_SIZE = 100
SENDER = '{"id":"c1","user":"ada","name":"Ada","kind":"browser"}'
DEADLINE = 10.0


def redis_broker(place: Path, presence_ttl: float, redis_server: RedisServer) -> Broker:
    from jupyter_channels.brokers.redis import RedisBroker

    return RedisBroker(
        redis_server.url(), HISTORY_SIZE, presence_ttl=presence_ttl, prefix=f"test:{place}:"
    )


@dataclass(frozen=True)
class BrokerKind:
    """One Broker implementation, as the suite makes it."""

    name: str
    #: A new, unstarted broker ("a server"); with ``shared``, those made on the same
    #: ``place`` share topics. It also gets the fixtures named in ``needs``, by name.
    make: Callable[..., Broker]
    shared: bool
    needs: tuple[str, ...] = ()


KINDS = [
    BrokerKind(
        "local",
        lambda place, presence_ttl: LocalBroker(SqliteHistory(":memory:", HISTORY_SIZE)),
        shared=False,
    ),
    BrokerKind("redis", redis_broker, shared=True, needs=("redis_server",)),
]
SHARED = [kind for kind in KINDS if kind.shared]


class Server:
    """A started broker and what it told its hub."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.delivered: list[StoredMessage] = []
        #: Other servers' members as the hub would see them: topic -> conn id -> username.
        self.remote: dict[str, dict[str, str]] = {}
        self.diffs: list[tuple[str, State, State]] = []
        self.lost: list[str] = []
        broker.deliver = self.delivered.append
        broker.presence_changed = self._presence
        broker.history_lost = self.lost.append

    def _presence(self, topic: str, joins: State, leaves: State) -> None:
        self.diffs.append((topic, joins, leaves))
        members = self.remote.setdefault(topic, {})
        for entry in leaves.values():
            for meta in entry["metas"]:
                members.pop(meta["phx_ref"], None)
        for username, entry in joins.items():
            for meta in entry["metas"]:
                members[meta["phx_ref"]] = username

    def offsets(self, topic: str) -> list[int]:
        return [m.offset for m in self.delivered if m.topic == topic]

    def publish(self, topic: str, n: int, exclude: str | None = None) -> asyncio.Future[Any]:
        return self.broker.publish(Draft(topic, "text", dumps({"n": n}), SENDER, exclude))

    def track(self, topic: str, conn_id: str, username: str = "ada") -> None:
        self.broker.track(topic, username, make_meta(conn_id, "browser", username, "A", "#000"))


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def kind(request) -> BrokerKind:
    return with_needs(request)


@pytest.fixture
def servers(kind, tmp_path, jp_asyncio_loop):
    """``await servers(presence_ttl=...)`` starts one more server; all are stopped after."""
    started: list[Server] = []

    async def start(presence_ttl: float = 30.0, place: Path = tmp_path) -> Server:
        broker = kind.make(place, presence_ttl)
        await broker.start()
        started.append(Server(broker))
        return started[-1]

    yield start
    for server in started:
        jp_asyncio_loop.run_until_complete(server.broker.stop())


# -- every broker ---------------------------------------------------------------------------


async def test_a_subscribed_topic_gets_every_message_once_in_offset_order(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")

    stored = await asyncio.gather(*(server.publish("chat:a", n) for n in range(20)))

    assert [m.offset for m in stored] == list(range(1, 21))
    await await_until(lambda: len(server.offsets("chat:a")) >= 20)
    assert server.offsets("chat:a") == list(range(1, 21))
    assert [json.loads(m.frame)["payload"]["n"] for m in server.delivered] == list(range(20))


async def test_a_publish_resolves_only_after_its_message_was_delivered_here(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")
    delivered_at_ack: list[bool] = []

    def acked(future: asyncio.Future[StoredMessage]) -> None:
        delivered_at_ack.append(future.result().offset in server.offsets("chat:a"))

    futures = [server.publish("chat:a", n) for n in range(5)]
    for future in futures:
        future.add_done_callback(acked)
    await asyncio.gather(*futures)

    assert delivered_at_ack == [True] * 5


async def test_topics_not_subscribed_are_stored_and_never_delivered(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")

    (message,) = await asyncio.gather(server.publish("chat:b", 1))
    await server.publish("chat:a", 2)

    await await_until(lambda: server.offsets("chat:a") == [1])
    assert server.offsets("chat:b") == []
    page = await server.broker.read("chat:b", since=0)
    assert [m.frame for m in page.messages] == [message.frame.encode()]
    assert await server.broker.topics() == {"chat:a": 1, "chat:b": 1}


async def test_after_unsubscribing_nothing_more_is_delivered(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")
    await server.publish("chat:a", 1)
    await await_until(lambda: server.offsets("chat:a") == [1])

    await server.broker.unsubscribe("chat:a")
    await server.publish("chat:a", 2)
    await asyncio.sleep(0.2)

    assert server.offsets("chat:a") == [1]


async def test_the_connection_to_exclude_is_delivered_with_the_message(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")

    await server.publish("chat:a", 1, exclude="conn-1")
    await server.publish("chat:a", 2)

    await await_until(lambda: len(server.delivered) == 2)
    assert [m.exclude for m in server.delivered] == ["conn-1", None]


async def test_a_servers_own_members_are_never_reported_as_remote(servers):
    server = await servers()
    await server.broker.subscribe("chat:a")

    server.track("chat:a", "c1")
    await asyncio.sleep(0.2)

    assert server.diffs == []
    assert await server.broker.remote_presence() == {}
    assert await server.broker.remote_presence(["chat:a"]) == {}


async def test_a_stopped_broker_fails_publishes_with_store_unavailable(kind, tmp_path):
    broker = kind.make(tmp_path, 30.0)
    await broker.start()
    await broker.stop()

    with pytest.raises(StoreUnavailable):
        await broker.publish(Draft("chat:a", "text", "{}", SENDER))


# -- several servers sharing a broker ------------------------------------------------------

shared = pytest.mark.parametrize("kind", SHARED, ids=lambda kind: kind.name, indirect=True)


@shared
async def test_messages_from_every_server_reach_every_server_with_the_same_offsets(servers):
    trio = [await servers() for _ in range(3)]
    for server in trio:
        await server.broker.subscribe("chat:lobby")

    acked = await asyncio.gather(
        *(server.publish("chat:lobby", n) for n in range(30) for server in trio)
    )

    assert sorted(m.offset for m in acked) == list(range(1, 91))
    for server in trio:
        await await_until(lambda server=server: len(server.offsets("chat:lobby")) >= 90)
        assert server.offsets("chat:lobby") == list(range(1, 91))
    frames = [[m.frame for m in server.delivered] for server in trio]
    assert frames[0] == frames[1] == frames[2]


@shared
async def test_members_of_another_server_join_and_leave_here(servers):
    here, there = await servers(), await servers()
    await here.broker.subscribe("chat:a")

    there.track("chat:a", "c1", "grace")
    there.track("chat:b", "c2", "grace")  # a topic "here" does not subscribe to
    await await_until(lambda: here.remote.get("chat:a") == {"c1": "grace"})
    there.broker.untrack("chat:a", "c1")
    await await_until(lambda: here.remote.get("chat:a") == {})

    (topic, joins, leaves), (_, joins2, leaves2) = here.diffs
    assert topic == "chat:a"
    assert list(joins) == ["grace"]
    assert leaves == {}
    assert joins["grace"]["metas"][0]["phx_ref"] == "c1"
    assert joins2 == {}
    assert leaves2 == joins


@shared
async def test_a_server_subscribing_later_learns_the_members_already_there(servers):
    here, there = await servers(), await servers()
    there.track("chat:a", "c1", "grace")
    there.track("chat:a", "c2", "alan")
    deadline = time.monotonic() + DEADLINE
    while len((await here.broker.remote_presence(["chat:a"])).get("chat:a", {})) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    await here.broker.subscribe("chat:a")

    assert here.remote["chat:a"] == {"c1": "grace", "c2": "alan"}


@shared
async def test_remote_presence_lists_other_servers_members_of_any_topic(servers):
    here, there = await servers(), await servers()
    there.track("chat:a", "c1", "grace")
    there.track("chat:b", "c2", "alan")
    here.track("chat:a", "c3", "ada")

    async def listed() -> dict[str, State]:
        return await here.broker.remote_presence()

    deadline = time.monotonic() + DEADLINE
    while set(await listed()) != {"chat:a", "chat:b"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    everything = await listed()
    assert list(everything["chat:a"]) == ["grace"]
    assert list(everything["chat:b"]) == ["alan"]
    assert list((await here.broker.remote_presence(["chat:b"]))["chat:b"]) == ["alan"]


@shared
async def test_a_server_that_stops_takes_its_members_along_at_once(servers):
    here, there = await servers(), await servers()
    await here.broker.subscribe("chat:a")
    there.track("chat:a", "c1", "grace")
    await await_until(lambda: here.remote.get("chat:a") == {"c1": "grace"})

    await there.broker.stop()

    await await_until(lambda: here.remote.get("chat:a") == {})  # well before presence_ttl (30 s)


@shared
async def test_a_server_that_dies_stops_counting_once_its_presence_expires(servers):
    here, there = await servers(presence_ttl=0.6), await servers(presence_ttl=0.6)
    await here.broker.subscribe("chat:a")
    there.track("chat:a", "c1", "grace")
    await await_until(lambda: here.remote.get("chat:a") == {"c1": "grace"})

    die(there.broker)

    await await_until(lambda: here.remote.get("chat:a") == {})
    assert await here.broker.remote_presence() == {}


@pytest.mark.parametrize(
    "kind", [k for k in SHARED if k.name == "redis"], ids=lambda kind: kind.name, indirect=True
)
async def test_a_join_made_while_a_renewal_is_on_its_way_is_kept(servers):
    """A renewal lists this server's members, then waits for a pooled connection; a join
    made meanwhile must not be undone when the renewal reaches Redis after it."""
    here, there = await servers(), await servers()
    store = there.broker.store
    real_eval = store.eval

    async def slow_eval(*args: Any) -> Any:
        await asyncio.sleep(0.3)  # as when a new connection has to be opened first
        return await real_eval(*args)

    store.eval = slow_eval
    renewal = asyncio.ensure_future(there.broker._sync())
    await asyncio.sleep(0)  # the renewal has started
    there.track("chat:a", "c1", "grace")
    await renewal
    await await_until(lambda: there.broker._presence_flusher is None)

    assert list((await here.broker.remote_presence(["chat:a"])).get("chat:a", {})) == ["grace"]


def die(broker: Any) -> None:
    """Stop a Redis broker's work as a killed process would: no goodbye."""
    for task in (broker._renewer, broker._reader):
        task.cancel()


@shared
async def test_a_lost_subscriber_connection_catches_up_from_history_without_a_gap(
    servers, redis_server
):
    here, there = await servers(), await servers()
    await here.broker.subscribe("chat:a")
    await there.publish("chat:a", 0)
    await await_until(lambda: here.offsets("chat:a") == [1])

    redis_server.client().client_kill_filter(_type="pubsub")
    await asyncio.gather(*(there.publish("chat:a", n) for n in range(1, 40)))
    await asyncio.gather(*(here.publish("chat:a", n) for n in range(40, 50)))

    await await_until(lambda: len(here.offsets("chat:a")) >= 50)
    assert here.offsets("chat:a") == list(range(1, 51))
    assert here.lost == []


@shared
async def test_when_redis_loses_its_data_subscribers_are_told_to_rejoin(servers, redis_server):
    here, there = await servers(), await servers()
    await here.broker.subscribe("chat:a")
    await asyncio.gather(*(there.publish("chat:a", n) for n in range(3)))
    await await_until(lambda: here.offsets("chat:a") == [1, 2, 3])

    redis_server.client().flushdb()  # what a restart without persistence leaves
    assert (await there.publish("chat:a", 4)).offset == 1

    await await_until(lambda: here.lost == ["chat:a"])
    await there.publish("chat:a", 5)
    await await_until(lambda: here.offsets("chat:a")[-1:] == [2])


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, with an append-only file, to stop and start."""
    redis = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.mark.parametrize(
    "kind", [k for k in SHARED if k.name == "redis"], ids=lambda kind: kind.name, indirect=True
)
async def test_an_outage_fails_publishes_then_heals_with_one_warning_per_server(
    kind, own_redis, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="jupyter_channels")
    pair = []
    for _ in range(2):
        pair.append(Server(kind.make(tmp_path, 30.0, redis_server=own_redis)))
        await pair[-1].broker.start()
    here, there = pair
    try:
        for server in pair:
            await server.broker.subscribe("chat:a")
        acked = [
            m.offset for m in await asyncio.gather(*(here.publish("chat:a", n) for n in range(3)))
        ]

        own_redis.stop()
        for n in range(5):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(there.publish("chat:a", 100 + n), 10)
        await asyncio.sleep(0.5)
        own_redis.start()

        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                acked.append((await there.publish("chat:a", 200)).offset)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        acked += [
            m.offset for m in await asyncio.gather(*(here.publish("chat:a", n) for n in range(5)))
        ]

        assert acked == list(range(1, 10))
        for server in pair:
            await await_until(lambda server=server: server.offsets("chat:a")[-1:] == [9])
            assert server.offsets("chat:a") == list(range(1, 10))
            assert server.lost == []
    finally:
        for server in pair:
            await server.broker.stop()
    down = [r for r in caplog.records if "is unavailable" in r.getMessage()]
    back = [r for r in caplog.records if "available again" in r.getMessage()]
    assert (len(down), len(back)) == (2, 2), [r.getMessage() for r in caplog.records]
