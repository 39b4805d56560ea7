"""A rejoin the server cannot answer now is tried again until it works: a real Jupyter
server with the Redis broker restarts while Redis is down, so the rejoin after the
reconnect gets ``unavailable``; once Redis is back the client is in the topic again,
with no action by its user."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

import jupyter_channels as jc
from jupyter_channels import Channel

from ..channels_fixture import CHANNELS
from ..redis_support import RedisServer
from ..support import REPO_ROOT, SpawnedServer, await_until, spawn, stop_process, wait_until

TOPIC = "chat:retried"


def post(server: SpawnedServer, payload: dict) -> int:
    path = f"api/channels/topics/{quote(TOPIC, safe='')}/messages"
    return server.rest("POST", path, {"subject": "text", "payload": payload})["offset"]


@pytest.fixture
def servers(tmp_path):
    """Redis (append-only, so the topic's offsets survive its restart), the server on it,
    and the same server (port, token) to restart."""
    redis = RedisServer(tmp_path / "redis", persistent=True).start()
    first = spawn(tmp_path / "first", tmp_path / "unused.sqlite", broker_url=redis.url())
    again = spawn(
        tmp_path / "again",
        tmp_path / "unused.sqlite",
        port=first.port,
        token=first.token,
        broker_url=redis.url(),
    )
    try:
        yield redis, first.start(), again
    finally:
        first.stop()
        again.stop()
        redis.stop()


def start_in_background(server: SpawnedServer) -> threading.Thread:
    """Start ``server`` on a thread: ``start`` returns once its REST API answers, which
    needs Redis, while its WebSocket accepts (and answers joins) before that."""
    thread = threading.Thread(target=server.start, name="starting", daemon=True)
    thread.start()
    return thread


def test_a_rejoin_answered_unavailable_is_retried_until_the_topic_is_joined_again(servers):
    redis, first, again = servers
    with jc.connect(first.http_url, first.token, max_backoff=0.5) as conn:
        room = conn.join(TOPIC)
        received: list[int | None] = []
        room.on("*", lambda message: received.append(message.offset))
        assert post(first, {"n": 1}) == 1
        wait_until(lambda: received == [1])

        redis.stop()
        first.stop()
        starting = start_in_background(again)
        wait_until(lambda: room.state == "retrying", timeout=60)
        # Still subscribed: nothing was dropped while the server could not answer.
        assert room.joined
        assert conn.state == "connected"

        redis.start()
        starting.join(60)
        wait_until(lambda: room.state == "joined", timeout=30)
        assert post(again, {"n": 2}) == 2
        wait_until(lambda: received == [1, 2])
        assert room.joined
        assert room.recovered


class JsSubscriber:
    """``js/client.js`` running in Node (``js_subscriber.mjs``), joined to ``topic``;
    ``events`` holds what it printed, one dict per line."""

    script = Path(__file__).with_name("js_subscriber.mjs")

    def __init__(self, server: SpawnedServer, topic: str) -> None:
        self.events: list[dict] = []
        self.proc = subprocess.Popen(
            ["node", "--experimental-websocket", self.script, server.ws_url, server.token, topic],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, name="node", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if "state" in e]

    def offsets(self) -> list[int]:
        return [e["message"] for e in self.events if "message" in e]

    def stop(self) -> None:
        stop_process(self.proc)


def test_the_js_client_retries_a_rejoin_answered_unavailable_until_it_is_joined_again(servers):
    redis, first, again = servers
    subscriber = JsSubscriber(first, TOPIC)
    try:
        wait_until(lambda: subscriber.states() == ["joined"], timeout=30)
        assert post(first, {"n": 1}) == 1
        wait_until(lambda: subscriber.offsets() == [1])

        redis.stop()
        first.stop()
        starting = start_in_background(again)
        wait_until(lambda: "retrying" in subscriber.states(), timeout=60)
        # Still subscribed, on a connection that is up: nothing was dropped.
        assert subscriber.events[-1] == {"state": "retrying", "reason": "unavailable"}
        assert [e["socket"] for e in subscriber.events if "socket" in e][-1] == "connected"

        redis.start()
        starting.join(60)
        wait_until(lambda: subscriber.states()[-1] == "joined", timeout=30)
        assert post(again, {"n": 2}) == 2
        wait_until(lambda: subscriber.offsets() == [1, 2])
        assert "closed" not in subscriber.states()
    finally:
        subscriber.stop()


class SlowOnFirstRejoin(Channel):
    """The third join of a topic (the first rejoin in the test) takes longer than
    ``hook_timeout``, so the client gets ``timeout``; every other join is quick."""

    def __init__(self, hub, pattern):
        super().__init__(hub, pattern)
        self.joins: dict[str, int] = {}

    async def handle_joined(self, client, message):
        seen = self.joins[message.topic] = self.joins.get(message.topic, 0) + 1
        if seen == 3:
            await asyncio.sleep(HOOK_TIMEOUT * 4)

    async def handle_message(self, client, message):
        await self.rebroadcast(message)


HOOK_TIMEOUT = 0.5


@pytest.fixture
def channels_config():
    return {
        "channels": {**CHANNELS, "slow:*": f"{__name__}:SlowOnFirstRejoin"},
        "hook_timeout": HOOK_TIMEOUT,
    }


async def test_a_rejoin_answered_timeout_is_retried_with_since(
    server_url, server_token, channels_app
):
    async with jc.aconnect(server_url, server_token) as writer:
        outbox = await writer.join("slow:room")  # the topic's first join
        bystanders = set(channels_app.hub.clients)
        async with jc.aconnect(server_url, server_token, max_backoff=0.5) as conn:
            room = await conn.join("slow:room")
            received = []
            room.on("*", lambda message: received.append(message.offset))
            assert await outbox.send("text", {"n": 1}) == 1
            await await_until(lambda: received == [1])
            for client_id in set(channels_app.hub.clients) - bystanders:
                channels_app.hub.clients[client_id].disconnect("dropped by the test")
            await await_until(lambda: room.state == "retrying")
            assert await outbox.send("text", {"n": 2}) == 2

            await await_until(lambda: room.state == "joined")
            assert await outbox.send("text", {"n": 3}) == 3
            await await_until(lambda: received == [1, 2, 3])
            assert room.recovered
