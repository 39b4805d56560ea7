"""History reads a server can afford: pages bounded by count and bytes, gapless when
read on, cheap in memory, and never in the way of publishing."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jupyter_channels.history.sqlite import SqliteHistory

from .support import SpawnedServer, await_until, spawn

BIG = "chat:big"
#: A payload that makes a ``message`` frame of just under 1 MiB.
MIB_TEXT = "x" * (1024 * 1024 - 400)


@pytest.fixture
def hub(channels_app):
    return channels_app.hub


async def store_messages(hub, topic: str, payloads: list[Any]) -> list[int]:
    """Publish as the server (no rate limit, no inbound frame limit); their offsets."""
    await hub.ensure_started()
    return list(await asyncio.gather(*(hub.publish(topic, "text", p) for p in payloads)))


def offsets(messages: list[dict]) -> list[int]:
    return [message["offset"] for message in messages]


# -- since: at most 500, read on without a gap -------------------------------------------------


async def test_a_join_with_since_gets_500_messages_then_reads_on_without_a_gap(hub, channels_ws):
    await store_messages(hub, "chat:long", [{"i": i} for i in range(520)])
    client = await channels_ws()

    first = await client.join("chat:long", since=0)
    second = await client.join("chat:long", since=first["messages"][-1]["offset"])

    assert offsets(first["messages"]) == list(range(1, 501))
    assert (first["offset"], first["recovered"], first["truncated"]) == (520, True, True)
    assert offsets(second["messages"]) == list(range(501, 521))
    assert (second["recovered"], "truncated" in second) == (True, False)
    (live,) = await store_messages(hub, "chat:long", [{"i": 520}])
    (frame,) = await client.messages(1, "chat:long")
    assert frame["offset"] == live == 521


async def test_a_rest_read_with_since_gives_500_messages_then_reads_on_without_a_gap(hub, jp_fetch):
    await store_messages(hub, "chat:long", [{"i": i} for i in range(520)])

    async def get(**query: int) -> dict:
        response = await jp_fetch(
            "api", "channels", "topics", "chat:long", "messages", params=query
        )
        return json.loads(response.body)

    pages = [await get(since=0)]
    while pages[-1].get("truncated"):
        pages.append(await get(since=pages[-1]["messages"][-1]["offset"], limit=15))

    assert [len(page["messages"]) for page in pages] == [500, 15, 5]
    assert [offsets(page["messages"]) for page in pages[1:]] == [
        list(range(501, 516)),
        list(range(516, 521)),
    ]
    assert [o for page in pages for o in offsets(page["messages"])] == list(range(1, 521))
    assert {(page["recovered"], page["offset"]) for page in pages} == {(True, 520)}


# -- replies bounded by bytes ---------------------------------------------------------------------


async def test_a_join_over_the_byte_budget_gets_the_newest_message_and_pages_back_the_rest(
    hub, channels_ws
):
    client = await channels_ws()
    await client.join("chat:healthy")
    await store_messages(hub, BIG, [{"text": MIB_TEXT, "i": i} for i in range(1, 6)])

    response = await client.join(BIG, history=50)
    pages = [response]
    while pages[-1].get("truncated"):
        reply = await client.request(
            {
                "event": "history",
                "topic": BIG,
                "payload": {"before": pages[-1]["messages"][0]["offset"]},
            }
        )
        pages.append(reply["payload"]["response"])

    assert (response["offset"], response["truncated"]) == (5, True)
    assert [offsets(page["messages"]) for page in pages] == [[5], [4], [3], [2], [1]]
    assert [page["messages"][0]["payload"]["i"] for page in pages] == [5, 4, 3, 2, 1]
    # The connection and its other topic carry on.
    await client.publish("chat:healthy", "text", {"text": "still here"})
    (frame,) = await client.messages(1, "chat:healthy")
    assert frame["payload"] == {"text": "still here"}


async def test_a_history_page_within_the_byte_budget_is_not_truncated(hub, channels_ws):
    await store_messages(hub, "chat:small", [{"i": i} for i in range(1, 6)])
    client = await channels_ws()
    await client.join("chat:small")

    reply = await client.request(
        {"event": "history", "topic": "chat:small", "payload": {"before": 4}}
    )

    response = reply["payload"]["response"]
    assert "truncated" not in response
    assert offsets(response["messages"]) == [1, 2, 3]


async def test_a_rest_read_over_the_byte_budget_pages_forward_and_back(hub, jp_fetch):
    await store_messages(hub, BIG, [{"text": MIB_TEXT, "i": i} for i in range(1, 6)])

    async def get(**query: int) -> dict:
        response = await jp_fetch("api", "channels", "topics", BIG, "messages", params=query)
        return json.loads(response.body)

    forward = [await get(since=0)]
    while forward[-1].get("truncated"):
        forward.append(await get(since=forward[-1]["messages"][-1]["offset"]))
    back = [await get()]
    while back[-1].get("truncated"):
        back.append(await get(before=back[-1]["messages"][0]["offset"]))

    assert [offsets(page["messages"]) for page in forward] == [[1], [2], [3], [4], [5]]
    assert [offsets(page["messages"]) for page in back] == [[5], [4], [3], [2], [1]]
    assert {page["recovered"] for page in forward + back} == {True}


# -- reads beside the writer -----------------------------------------------------------------------


@pytest.mark.parametrize("broker_url", [""], ids=["local"])
async def test_a_publish_during_a_read_is_acked_before_the_read_completes(
    hub, channels_ws, jp_fetch, monkeypatch
):
    store = hub.broker.store
    assert isinstance(store, SqliteHistory)
    await store_messages(hub, BIG, [{"i": 1}])
    reading, release = threading.Event(), threading.Event()
    read = store._read

    def held_read(*args: Any) -> Any:
        # Holds the read in the middle, on whatever thread it runs.
        reading.set()
        release.wait(30)
        return read(*args)

    client = await channels_ws()
    await client.join("chat:other")
    monkeypatch.setattr(store, "_read", held_read)
    big_read = asyncio.ensure_future(
        jp_fetch("api", "channels", "topics", BIG, "messages", params={"since": 0})
    )
    try:
        await await_until(reading.is_set)

        offset = await client.publish("chat:other", "text", {"text": "not held up"})

        assert offset == 1
        assert not big_read.done()
    finally:
        release.set()
    assert offsets(json.loads((await big_read).body)["messages"]) == [1]


# -- memory ----------------------------------------------------------------------------------------


class Peak:
    """The server's peak resident memory from ``start`` on (the kernel's high-water mark,
    reset through ``/proc/PID/clear_refs``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(name)

    def start(self) -> int:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.field("VmRSS")

    def peak(self) -> int:
        return self.field("VmHWM")


@pytest.fixture(scope="module")
def filled_server(tmp_path_factory) -> Any:
    """A spawned server holding 500 messages of 200 KB in one topic: a full page of them."""
    root = tmp_path_factory.mktemp("big-history")
    # Pages hold up to a quarter of max_queued_bytes: room for a full page of 500.
    server = spawn(root, root / "history.sqlite", rate_limit=0, max_queued_bytes=512 * 2**20)
    server.start()
    body = {"subject": "text", "payload": {"text": "x" * 200_000}}
    try:
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda _: server.rest("POST", f"api/channels/topics/{BIG}/messages", body),
                    range(500),
                )
            )
        yield server
    finally:
        server.stop()


def get_raw(server: SpawnedServer, path: str) -> bytes:
    request = urllib.request.Request(
        server.http_url + path, headers={"Authorization": f"token {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return bytes(response.read())


def test_the_biggest_read_grows_the_server_by_less_than_three_times_its_reply(filled_server):
    assert filled_server.proc is not None
    memory = Peak(filled_server.proc.pid)
    before = memory.start()

    reply = get_raw(filled_server, f"api/channels/topics/{BIG}/messages?since=0")

    grown = memory.peak() - before
    assert reply.count(b'"event":"message"') == 500
    assert len(reply) > 100_000_000
    assert grown < 3 * len(reply), (
        f"grew {grown / 1e6:.0f} MB for a {len(reply) / 1e6:.0f} MB reply"
    )
