"""One conformance suite for every HistoryStore: offsets, ordering, reads, retention, failures.

Adding a store is one more entry in ``KINDS``; the whole suite then runs against it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_channels.history import (
    Draft,
    HistoryStore,
    Page,
    Retained,
    SqliteHistory,
    StoredMessage,
    StoreUnavailable,
)
from jupyter_channels.protocol import dumps

from ..support import with_needs

HISTORY_SIZE = 5
SENDER = '{"id":"c1","user":"alice","name":"Alice","kind":"browser"}'


def fail_next_sqlite_commit(store: HistoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(store, SqliteHistory)
    write = store._write
    failed = False

    def write_once_failing(messages: list[StoredMessage]) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise sqlite3.OperationalError("disk I/O error (injected)")
        write(messages)

    monkeypatch.setattr(store, "_write", write_once_failing)


def fail_next_redis_commit(store: HistoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    run_batch = store._run_batch  # type: ignore[attr-defined]
    failed = False

    async def run_once_failing(batch: list[Any]) -> list[Any]:
        nonlocal failed
        if not failed:
            failed = True
            raise redis.ConnectionError("Connection closed by server (injected)")
        return await run_batch(batch)

    monkeypatch.setattr(store, "_run_batch", run_once_failing)


def redis_history(place: Path, size: int, redis_server: Any) -> HistoryStore:
    """Each test's ``place`` is its own key prefix: tests share one Redis, not their data."""
    from jupyter_channels.history.redis import RedisHistory

    return RedisHistory(redis_server.url(), size, prefix=f"test:{place}:")


@dataclass(frozen=True)
class StoreKind:
    """One HistoryStore implementation, as the suite makes and breaks it."""

    name: str
    #: A new, unopened store kept under ``place`` (a fresh directory per test); it also
    #: gets the fixtures named in ``needs``, by name.
    make: Callable[..., HistoryStore]
    #: Make the store's next commit fail, as a full disk or a lost connection would.
    fail_next_commit: Callable[[HistoryStore, pytest.MonkeyPatch], None]
    #: Whether a new instance on the same ``place`` finds what the last one stored.
    durable: bool
    #: Fixtures ``make`` needs (a server to talk to).
    needs: tuple[str, ...] = ()


KINDS = [
    StoreKind(
        "sqlite-file",
        lambda place, size: SqliteHistory(place / "history.sqlite", size),
        fail_next_sqlite_commit,
        durable=True,
    ),
    StoreKind(
        "sqlite-memory",
        lambda place, size: SqliteHistory(":memory:", size),
        fail_next_sqlite_commit,
        durable=False,
    ),
    StoreKind(
        "redis",
        redis_history,
        fail_next_redis_commit,
        durable=True,
        needs=("redis_server",),
    ),
]
DURABLE = [kind for kind in KINDS if kind.durable]


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def kind(request) -> StoreKind:
    return with_needs(request)


@pytest.fixture
def store(kind, tmp_path, jp_asyncio_loop):
    """An open store keeping the newest ``HISTORY_SIZE`` messages of each topic."""
    store = kind.make(tmp_path, HISTORY_SIZE)
    jp_asyncio_loop.run_until_complete(store.open())
    yield store
    jp_asyncio_loop.run_until_complete(store.close())


def draft(topic: str, n: int) -> Draft:
    return Draft(topic, "text", dumps({"n": n}), SENDER)


async def append(store: HistoryStore, topic: str, *ns: int) -> list[StoredMessage]:
    """Append one message per ``n`` (issued together, then awaited)."""
    return list(await asyncio.gather(*(store.append(draft(topic, n)) for n in ns)))


def offsets(page: Page) -> list[int]:
    return [message.offset for message in page.messages]


def ns(messages: Sequence[StoredMessage | Retained]) -> list[int]:
    return [json.loads(message.frame)["payload"]["n"] for message in messages]


# -- numbering --------------------------------------------------------------------------------


async def test_offsets_start_at_one_and_increase_by_one_per_topic(store):
    got = []
    for topic in ["a", "a", "b", "a", "b", "c"]:
        (message,) = await append(store, topic, 0)
        got.append((topic, message.offset))

    assert got == [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2), ("c", 1)]


async def test_an_empty_topic_reads_as_offset_zero_with_no_messages(store):
    page = await store.read("nothing:here")

    assert (page.messages, page.offset, page.recovered) == ([], 0, True)
    assert (await store.read("nothing:here", since=0)).recovered is True


async def test_appends_issued_before_awaiting_are_numbered_and_stored_in_call_order(store):
    futures = {"a": [], "b": []}
    for n in range(40):
        topic = "ab"[n % 2]
        futures[topic].append(store.append(draft(topic, n)))
        if n % 7 == 0:
            await asyncio.sleep(0)  # let some batches start while others are still queued

    for topic, pending in futures.items():
        stored = await asyncio.gather(*pending)
        assert [m.offset for m in stored] == list(range(1, 21))
        assert ns(stored) == [n for n in range(40) if "ab"[n % 2] == topic]
        page = await store.read(topic, limit=HISTORY_SIZE)
        assert offsets(page) == [16, 17, 18, 19, 20]
        assert ns(page.messages) == ns(stored)[-HISTORY_SIZE:]


async def test_the_stored_message_is_its_encoded_message_frame(store):
    (message,) = await append(store, "chat:lobby", 7)

    assert json.loads(message.frame) == {
        "event": "message",
        "topic": "chat:lobby",
        "subject": "text",
        "payload": {"n": 7},
        "offset": 1,
        "ts": message.ts,
        "from": {"id": "c1", "user": "alice", "name": "Alice", "kind": "browser"},
    }
    (read,) = (await store.read("chat:lobby")).messages
    assert (read.offset, read.ts, read.frame) == (1, message.ts, message.frame.encode())


async def test_on_commit_gets_each_message_once_in_offset_order_after_it_is_stored(store):
    committed: list[StoredMessage] = []
    reads: list[tuple[int, asyncio.Future[Page]]] = []

    def on_commit(messages):
        committed.extend(messages)
        # A read started now must already see what was just committed.
        reads.append((messages[-1].offset, asyncio.ensure_future(store.read("a", limit=1))))

    store.on_commit = on_commit
    pending = []
    for n in range(12):
        pending.append(store.append(draft("a", n)))
        if n % 5 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*pending)

    assert [m.offset for m in committed] == list(range(1, 13))
    assert ns(committed) == list(range(12))
    assert reads
    for last_committed, read in reads:
        assert (await read).offset >= last_committed


# -- reading ----------------------------------------------------------------------------------


async def test_reading_without_since_gives_the_newest_limit_oldest_first(store):
    await append(store, "a", 1, 2, 3, 4, 5)

    page = await store.read("a", limit=3)

    assert offsets(page) == [3, 4, 5]
    assert ns(page.messages) == [3, 4, 5]
    assert (page.offset, page.recovered) == (5, True)
    assert offsets(await store.read("a")) == [1, 2, 3, 4, 5]


async def test_a_limit_of_zero_reads_no_messages_but_the_offset(store):
    await append(store, "a", 1, 2)

    page = await store.read("a", limit=0)

    assert (page.messages, page.offset) == ([], 2)


async def test_reading_before_pages_back_through_history_oldest_first(store):
    await append(store, "a", 1, 2, 3, 4, 5)

    pages = [offsets(await store.read("a", limit=2))]
    while pages[-1]:
        pages.append(offsets(await store.read("a", before=pages[-1][0], limit=2)))

    assert pages == [[4, 5], [2, 3], [1], []]


async def test_reading_before_a_point_past_the_end_reads_the_newest(store):
    await append(store, "a", 1, 2, 3)

    assert offsets(await store.read("a", before=100, limit=2)) == [2, 3]
    assert offsets(await store.read("a", before=2**64, limit=2)) == [2, 3]


async def test_since_gives_exactly_the_messages_after_it(store):
    await append(store, "a", 1, 2, 3, 4, 5)

    page = await store.read("a", since=2)

    assert (offsets(page), page.recovered, page.offset) == ([3, 4, 5], True, 5)
    assert offsets(await store.read("a", since=0)) == [1, 2, 3, 4, 5]


async def test_since_gives_at_most_limit_messages_the_oldest_after_it_and_says_truncated(store):
    await append(store, "a", 1, 2, 3, 4, 5)

    page = await store.read("a", since=1, limit=2)

    assert (offsets(page), page.offset, page.recovered, page.truncated) == ([2, 3], 5, True, True)


async def test_paging_forward_with_since_reads_every_message_once(store):
    await append(store, "a", 1, 2, 3, 4, 5)

    pages = [await store.read("a", since=0, limit=2)]
    while pages[-1].truncated:
        pages.append(await store.read("a", since=pages[-1].messages[-1].offset, limit=2))

    assert [offsets(page) for page in pages] == [[1, 2], [3, 4], [5]]
    assert [(page.recovered, page.truncated) for page in pages] == [
        (True, True),
        (True, True),
        (True, False),
    ]


async def test_a_page_that_holds_all_it_was_asked_for_is_not_truncated(store):
    await append(store, "a", 1, 2, 3)

    pages = [
        await store.read("a", since=0, max_bytes=10**6),
        await store.read("a", limit=3, max_bytes=10**6),
        await store.read("a", limit=2),
        await store.read("a", before=2, max_bytes=10**6),
    ]

    assert [(offsets(page), page.truncated) for page in pages] == [
        ([1, 2, 3], False),
        ([1, 2, 3], False),
        ([2, 3], False),
        ([1], False),
    ]


async def test_a_byte_budget_keeps_the_newest_messages_that_fit(store):
    stored = await append(store, "a", 1, 2, 3, 4)
    two = len(stored[2].frame.encode()) + len(stored[3].frame.encode())

    page = await store.read("a", limit=50, max_bytes=two)
    older = await store.read("a", before=page.messages[0].offset, limit=50, max_bytes=two)

    assert (offsets(page), page.truncated) == ([3, 4], True)
    assert (offsets(older), older.truncated) == ([1, 2], False)


async def test_a_byte_budget_after_since_keeps_the_oldest_messages_that_fit(store):
    stored = await append(store, "a", 1, 2, 3, 4)
    two = len(stored[1].frame.encode()) + len(stored[2].frame.encode())

    page = await store.read("a", since=1, limit=50, max_bytes=two)

    assert (offsets(page), page.recovered, page.truncated) == ([2, 3], True, True)


async def test_a_page_holds_one_message_even_if_it_is_over_the_byte_budget(store):
    await append(store, "a", 1, 2, 3)

    newest = await store.read("a", max_bytes=1)
    after = await store.read("a", since=0, max_bytes=1)
    last = await store.read("a", before=2, max_bytes=1)

    assert (offsets(newest), newest.truncated) == ([3], True)
    assert (offsets(after), after.truncated) == ([1], True)
    assert (offsets(last), last.truncated) == ([1], False)


async def test_a_page_is_the_stored_frames_byte_for_byte(store):
    stored = await append(store, "a", 1, 2)

    for page in (await store.read("a"), await store.read("a", since=0, max_bytes=1)):
        assert all(isinstance(message.frame, bytes) for message in page.messages)
        assert [m.frame for m in page.messages] == [m.frame.encode() for m in stored][
            : len(page.messages)
        ]


async def test_since_equal_to_the_last_offset_is_recovered_and_empty(store):
    await append(store, "a", 1, 2, 3)

    page = await store.read("a", since=3)

    assert (page.messages, page.recovered, page.offset) == ([], True, 3)


async def test_since_older_than_retention_is_not_recovered_and_gives_the_newest_retained(store):
    await append(store, "a", *range(1, 9))  # retained: 4..8

    for since in (0, 1, 2):
        page = await store.read("a", since=since)
        assert (offsets(page), page.recovered, page.truncated) == ([4, 5, 6, 7, 8], False, False)


async def test_since_older_than_retention_with_a_limit_gives_the_newest_that_many(store):
    await append(store, "a", *range(1, 9))  # retained: 4..8

    page = await store.read("a", since=1, limit=2)

    assert (offsets(page), page.recovered, page.truncated) == ([7, 8], False, True)


async def test_since_just_before_the_oldest_retained_message_is_recovered(store):
    await append(store, "a", *range(1, 9))  # retained: 4..8

    page = await store.read("a", since=3)

    assert (offsets(page), page.recovered) == ([4, 5, 6, 7, 8], True)


@pytest.mark.parametrize("since", [4, 1000, 2**63, 2**100])
async def test_since_beyond_the_last_offset_is_not_recovered(store, since):
    await append(store, "a", 1, 2, 3)

    page = await store.read("a", since=since)

    assert (page.recovered, page.offset) == (False, 3)
    assert offsets(page) == [1, 2, 3]


async def test_retention_keeps_exactly_the_newest_history_size(store):
    for batch in ([1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]):
        await append(store, "a", *batch)
    await append(store, "b", 1, 2)

    page = await store.read("a", limit=100)

    assert offsets(page) == [8, 9, 10, 11, 12]
    assert ns(page.messages) == [8, 9, 10, 11, 12]
    assert offsets(await store.read("b", limit=100)) == [1, 2]


async def test_topics_gives_every_topic_with_its_last_offset(store):
    await append(store, "a", 1, 2, 3)
    await append(store, "b", 1)
    await append(store, "trimmed", *range(9))

    assert await store.topics() == {"a": 3, "b": 1, "trimmed": 9}


async def test_the_epoch_is_a_stable_nonempty_string(store):
    await append(store, "a", 1)

    pages = [await store.read("a"), await store.read("a", since=0), await store.read("b")]

    assert isinstance(store.epoch, str)
    assert store.epoch
    assert {page.epoch for page in pages} == {store.epoch}


REDIS = [kind for kind in KINDS if kind.name == "redis"]


@pytest.mark.parametrize("kind", REDIS, ids=lambda kind: kind.name, indirect=True)
async def test_a_redis_read_under_way_holds_up_no_append(store, monkeypatch):
    await append(store, "a", 1)
    started, release = asyncio.Event(), asyncio.Event()
    run = store.eval

    async def held_eval(*args: Any) -> Any:
        started.set()
        await release.wait()
        return await run(*args)

    monkeypatch.setattr(store, "eval", held_eval)
    reading = asyncio.ensure_future(store.read("a", since=0))
    try:
        await asyncio.wait_for(started.wait(), 10)
        (stored,) = await asyncio.wait_for(append(store, "b", 2), 10)
        assert stored.offset == 1
        assert not reading.done()
    finally:
        release.set()
    assert offsets(await reading) == [1]


# -- failures and restarts --------------------------------------------------------------------


async def test_a_closed_store_fails_appends_and_reads_with_store_unavailable(kind, tmp_path):
    store = kind.make(tmp_path, HISTORY_SIZE)
    await store.open()
    await append(store, "a", 1)
    await store.close()

    with pytest.raises(StoreUnavailable):
        await store.append(draft("a", 2))
    with pytest.raises(StoreUnavailable):
        await store.read("a")


async def test_a_failed_commit_fails_its_messages_and_leaves_no_gap(store, kind, monkeypatch):
    committed: list[StoredMessage] = []
    store.on_commit = committed.extend
    await append(store, "a", 1, 2)
    kind.fail_next_commit(store, monkeypatch)

    lost = [store.append(draft("a", 3)), store.append(draft("a", 4))]
    results = await asyncio.gather(*lost, return_exceptions=True)
    (message,) = await append(store, "a", 5)

    assert [type(r) for r in results] == [StoreUnavailable, StoreUnavailable]
    assert message.offset == 3
    page = await store.read("a", since=0)
    assert (offsets(page), ns(page.messages), page.recovered) == ([1, 2, 3], [1, 2, 5], True)
    assert [(m.offset, n) for m, n in zip(committed, ns(committed), strict=True)] == [
        (1, 1),
        (2, 2),
        (3, 5),
    ]
    assert await store.topics() == {"a": 3}


async def test_messages_queued_behind_a_failed_commit_never_leave_a_gap(store, kind, monkeypatch):
    await append(store, "a", 1)
    kind.fail_next_commit(store, monkeypatch)

    first = store.append(draft("a", 2))
    await asyncio.sleep(0)  # the failing commit is under way
    behind = [store.append(draft("a", n)) for n in (3, 4)]
    results = await asyncio.gather(first, *behind, return_exceptions=True)
    (after,) = await append(store, "a", 5)

    assert isinstance(results[0], StoreUnavailable)
    stored = [r for r in results if isinstance(r, StoredMessage)]
    assert all(isinstance(r, StoredMessage | StoreUnavailable) for r in results)
    page = await store.read("a", since=0)
    assert offsets(page) == list(range(1, len(stored) + 3))
    assert ns(page.messages) == [1, *ns(stored), 5]
    assert after.offset == len(stored) + 2


async def test_a_message_the_store_cannot_encode_fails_and_leaves_no_gap(store):
    await append(store, "a", 1)

    unstorable = store.append(Draft("a", "text\ud800", "{}", SENDER))  # not UTF-8
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(unstorable, 10)
    (after,) = await append(store, "a", 2)

    assert after.offset == 2
    assert ns((await store.read("a", since=0)).messages) == [1, 2]


@pytest.mark.parametrize("kind", DURABLE, ids=lambda kind: kind.name, indirect=True)
async def test_reopening_a_durable_store_keeps_messages_epoch_and_offsets(kind, tmp_path):
    first = kind.make(tmp_path, HISTORY_SIZE)
    await first.open()
    try:
        stored = await append(first, "a", 1, 2, 3)
        await append(first, "b", 1)
        epoch = first.epoch
    finally:
        await first.close()

    second = kind.make(tmp_path, HISTORY_SIZE)
    await second.open()
    try:
        page = await second.read("a", since=0)
        (next_message,) = await append(second, "a", 4)
        topics = await second.topics()
    finally:
        await second.close()

    assert second.epoch == epoch
    assert [m.frame for m in page.messages] == [m.frame.encode() for m in stored]
    assert (page.offset, page.epoch, page.recovered) == (3, epoch, True)
    assert next_message.offset == 4
    assert topics == {"a": 4, "b": 1}


# -- what moderation reads and writes ---------------------------------------------------------


async def test_message_at_gives_the_retained_message_at_an_offset(store):
    stored = await append(store, "a", 10, 11, 12)
    await append(store, "b", 20)

    found = await store.message_at("a", 2)
    assert found is not None
    assert (found.offset, found.ts, found.frame) == (2, stored[1].ts, stored[1].frame.encode())
    assert json.loads(found.frame)["payload"] == {"n": 11}


@pytest.mark.parametrize("offset", [0, -1, 4, 2**60])
async def test_message_at_an_offset_with_no_message_gives_none(store, offset):
    await append(store, "a", 1, 2, 3)
    assert await store.message_at("a", offset) is None
    assert await store.message_at("nothing", 1) is None


async def test_message_at_an_offset_no_longer_retained_gives_none(store):
    await append(store, "a", *range(HISTORY_SIZE + 2))
    assert await store.message_at("a", 1) is None
    assert await store.message_at("a", HISTORY_SIZE + 2) is not None


async def test_a_mute_is_kept_per_topic_and_user_and_lifted_with_none(store):
    assert await store.muted_until("a", "alan") is None
    await store.mute("a", "alan", 1_000)
    await store.mute("a", "alan", 2_000)
    assert await store.muted_until("a", "alan") == 2_000
    assert await store.muted_until("a", "ada") is None
    assert await store.muted_until("b", "alan") is None
    await store.mute("a", "alan", None)
    assert await store.muted_until("a", "alan") is None


@pytest.mark.parametrize("kind", DURABLE, ids=lambda kind: kind.name, indirect=True)
async def test_a_durable_store_keeps_its_mutes_when_reopened(kind, tmp_path):
    far = 2**52
    first = kind.make(tmp_path, HISTORY_SIZE)
    await first.open()
    try:
        await first.mute("a", "alan", far)
        await first.mute("a", "ada", far)
        await first.mute("a", "ada", None)
    finally:
        await first.close()

    second = kind.make(tmp_path, HISTORY_SIZE)
    await second.open()
    try:
        assert await second.muted_until("a", "alan") == far
        assert await second.muted_until("a", "ada") is None
    finally:
        await second.close()
