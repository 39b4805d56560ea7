"""Scale-out: three real Jupyter servers share channels through one real Redis.

Each server is a ``jupyter server`` process with
``--ChannelsApp.broker_url=redis://127.0.0.1:<port>/0``; the tests talk to
them over WebSockets and REST, as browsers and kernels would. Ada is connected
to server 1, Grace to server 2, Alan to server 3.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .channels_fixture import USER_HEADER
from .redis_support import RedisServer
from .support import ChannelsClient, SpawnedServer, error_reason

REPO_ROOT = Path(__file__).resolve().parents[1]
USERS = ["ada", "grace", "alan"]
#: Short, so that a killed server's members go in seconds; the default is 30.
PRESENCE_TTL = 1.5
#: The longest a dead server may keep counting, as the issue puts it.
PRESENCE_DEADLINE = 60.0


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """Redis with an append-only file, so that a restart keeps what it acknowledged."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), persistent=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def servers(redis, tmp_path_factory):
    """Three servers on that Redis, started together; the users come from ``X-Test-User``."""
    root = tmp_path_factory.mktemp("scale-out")
    config_dir = root / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"identity_provider_class": "tests.channels_fixture.HeaderUsers"}})
    )
    env = {
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }

    def start(i: int) -> SpawnedServer:
        return start_on_a_free_port(
            lambda port: SpawnedServer(
                root / f"server{i}",
                root / f"server{i}" / "history.sqlite",  # unused: Redis holds the history
                port=port,
                env=env,
                broker_url=redis.url(),
                presence_ttl=PRESENCE_TTL,
            )
        )

    with ThreadPoolExecutor(3) as pool:
        trio = list(pool.map(start, (1, 2, 3)))
    try:
        yield trio
    finally:
        for server in trio:
            server.stop()


def start_on_a_free_port(make: Any, port: int | None = None) -> SpawnedServer:
    """Start ``make(port)``; a free port can be taken before the server binds it (by
    any outgoing connection), so try another one then."""
    for _ in range(3):
        server = make(port)
        try:
            return server.start()
        except RuntimeError as e:
            if "is not available" not in str(e):
                raise
            port = None
    raise RuntimeError("no free port for a server")


async def connect_everyone(servers: list[SpawnedServer], topic: str) -> list[ChannelsClient]:
    """Ada on server 1, Grace on server 2, Alan on server 3, each joined to ``topic``."""
    clients = []
    for server, user in zip(servers, USERS, strict=True):
        client = await server.connect(**{USER_HEADER: user})
        await client.join(topic)
        clients.append(client)
    return clients


async def send(client: ChannelsClient, topic: str, n: int) -> dict:
    return await client.request(
        {"event": "message", "topic": topic, "subject": "n", "payload": {"n": n}}
    )


def rest_presence(server: SpawnedServer, topic: str) -> set[str]:
    return set(server.rest("GET", f"api/channels/topics/{topic.replace(':', '%3A')}/presence"))


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s, still not: {what}")
        await asyncio.sleep(0.1)


async def test_messages_sent_through_each_server_reach_every_client_with_the_same_offsets(
    servers,
):
    clients = await connect_everyone(servers, "chat:lobby")

    for n in range(10):  # interleaved: every server publishes while the others do
        for i, client in enumerate(clients):
            await client.send(
                {"event": "message", "topic": "chat:lobby", "subject": "n",
                 "payload": {"n": 10 * i + n}, "ref": f"r{n}"}
            )  # fmt: skip
    replies = [await client.expect("reply", ref=f"r{n}") for client in clients for n in range(10)]

    acked = sorted(reply["payload"]["response"]["offset"] for reply in replies)
    assert acked == list(range(1, 31))
    received = [await client.messages(30, "chat:lobby") for client in clients]
    for frames in received:
        assert [f["offset"] for f in frames] == list(range(1, 31))
    assert received[0] == received[1] == received[2]
    assert {f["payload"]["n"] for f in received[0]} == {
        10 * i + n for i in range(3) for n in range(10)
    }
    for client in clients:
        assert [f for f in await client.drain(timeout=0.2) if f["event"] == "message"] == []
    for client in clients:
        client.close()


async def test_a_client_rejoining_on_another_server_with_since_gets_exactly_the_missed_ones(
    servers,
):
    one, two, three = servers
    reader = await one.connect(**{USER_HEADER: "ada"})
    writer = await two.connect(**{USER_HEADER: "grace"})
    await reader.join("chat:roaming")
    await writer.join("chat:roaming")
    for n in range(5):
        await writer.publish("chat:roaming", "n", {"n": n})
    seen = await reader.messages(5, "chat:roaming")
    last = seen[-1]["offset"]
    reader.close()

    for n in range(5, 12):
        await writer.publish("chat:roaming", "n", {"n": n})
    back = await three.connect(**{USER_HEADER: "ada"})
    response = await back.join("chat:roaming", since=last)

    assert response["recovered"] is True
    assert [m["offset"] for m in response["messages"]] == list(range(last + 1, 13))
    assert [m["payload"]["n"] for m in response["messages"]] == list(range(5, 12))
    await writer.publish("chat:roaming", "n", {"n": 12})
    (live,) = await back.messages(1, "chat:roaming")
    assert live["offset"] == 13
    await back.silent(0.2)
    back.close()
    writer.close()


async def test_presence_lists_every_servers_users_until_a_killed_server_s_users_leave(servers):
    clients = await connect_everyone(servers, "chat:presence")
    try:
        for server in servers:
            await wait_for(
                lambda server=server: rest_presence(server, "chat:presence") == set(USERS),
                10,
                f"{server.http_url} lists everyone",
            )
        ada = clients[0]
        joined = {
            user
            for frame in await ada.drain(timeout=0.5)
            if frame.get("event") == "presence_diff"
            for user in frame["payload"]["joins"]
        }
        assert joined == {"grace", "alan"}

        assert servers[2].proc is not None
        servers[2].proc.kill()  # SIGKILL: no goodbye from server 3
        servers[2].proc.wait(10)

        for server in servers[:2]:
            await wait_for(
                lambda server=server: rest_presence(server, "chat:presence") == {"ada", "grace"},
                PRESENCE_DEADLINE,
                f"{server.http_url} forgot Alan",
            )
        leave = await ada.expect("presence_diff", PRESENCE_DEADLINE)
        while "alan" not in leave["payload"]["leaves"]:
            leave = await ada.expect("presence_diff", PRESENCE_DEADLINE)
        grace = clients[1]
        while True:
            frame = await grace.expect("presence_diff", PRESENCE_DEADLINE)
            if "alan" in frame["payload"]["leaves"]:
                break
    finally:
        for client in clients:
            client.close()
        # Server 3 again (on a fresh port if its old one was taken), for the tests after this.
        old = servers[2]
        servers[2] = start_on_a_free_port(
            lambda port: SpawnedServer(
                old.root, old.history_path, port=port, env=old.env, **old.traits
            ),
            old.port,
        )


async def test_a_redis_outage_fails_sends_loses_nothing_acknowledged_and_heals(servers, redis):
    topic = "chat:outage"
    clients = await connect_everyone(servers, topic)
    acked: dict[int, int] = {}  # offset -> n

    def record(reply: dict, n: int) -> None:
        if reply["payload"]["status"] == "ok":
            offset = reply["payload"]["response"]["offset"]
            assert offset not in acked, f"offset {offset} reused"
            acked[offset] = n

    for n in range(5):
        record(await send(clients[n % 3], topic, n), n)
    assert sorted(acked) == [1, 2, 3, 4, 5]

    redis.stop()
    refused = []
    started = time.monotonic()
    n = 100
    while time.monotonic() - started < 5:
        for client in clients:
            reply = await send(client, topic, n)
            assert reply["payload"]["status"] == "error", reply  # never an ok not stored
            refused.append(error_reason(reply))
            n += 1
        await asyncio.sleep(0.5)
    redis.start()

    # The servers heal by themselves: sends succeed again on every server.
    for client in clients:
        deadline = time.monotonic() + 30
        while True:
            reply = await send(client, topic, n)
            n += 1
            if reply["payload"]["status"] == "ok":
                record(reply, n - 1)
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.2)
    for _ in range(3):
        for client in clients:
            record(await send(client, topic, n), n)
            n += 1

    assert set(refused) == {"unavailable"}
    assert len(refused) >= 9
    newest = max(acked)
    assert sorted(acked)[:5] == [1, 2, 3, 4, 5]
    assert min(k for k in acked if k > 5) == 6
    for client in clients:
        # Each server delivers what it missed while its subscription was down, then live.
        frames: list[dict] = []
        while not frames or frames[-1]["offset"] < newest:
            frame = await client.recv(30)
            if frame.get("event") == "message":
                frames.append(frame)
        offsets = [f["offset"] for f in frames]
        assert offsets == list(range(1, newest + 1)), "every message, in order, once"
        assert {o: frames[o - 1]["payload"]["n"] for o in acked} == acked
    # Every acknowledged message is in history, with what was sent.
    page = servers[0].rest(
        "GET", f"api/channels/topics/{topic.replace(':', '%3A')}/messages?since=0&limit=500"
    )
    stored = {m["offset"]: m["payload"]["n"] for m in page["messages"]}
    assert page["recovered"] is True
    assert sorted(stored) == list(range(1, newest + 1))
    assert {o: stored[o] for o in acked} == acked
    for server in servers:
        log = server.log_path.read_text()
        assert len(re.findall(r"Redis at \S+ is unavailable", log)) == 1, log[-3000:]
        assert len(re.findall(r"Redis at \S+ is available again", log)) == 1, log[-3000:]
    for client in clients:
        client.close()
