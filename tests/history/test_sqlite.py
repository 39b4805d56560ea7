"""The embedded store's reads run beside its writer: never behind a commit, never inside one."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

from jupyter_channels.history import Draft, SqliteHistory

from ..support import await_until

SENDER = '{"id":"c1","user":"alice","name":"Alice","kind":"browser"}'


class HeldCommit:
    """The writer's connection, stopping each ``COMMIT`` until the test releases it:
    a commit that takes as long as the test needs."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.committing = threading.Event()
        self.release = threading.Event()

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            self.committing.set()
            self.release.wait(30)
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def draft(n: int) -> Draft:
    return Draft("a", "text", f'{{"n":{n}}}', SENDER)


async def test_a_read_during_a_commit_gets_the_last_whole_batch_without_waiting(tmp_path):
    store = SqliteHistory(tmp_path / "history.sqlite", 10)
    await store.open()
    held = None
    try:
        await store.append(draft(1))
        assert store._db is not None
        held = HeldCommit(store._db)
        store._db = held  # type: ignore[assignment]
        batch = [store.append(draft(n)) for n in (2, 3)]
        await await_until(held.committing.is_set)

        page = await asyncio.wait_for(store.read("a", since=0), 10)

        assert ([m.offset for m in page.messages], page.offset) == ([1], 1)
        assert not any(future.done() for future in batch)
        held.release.set()
        await asyncio.gather(*batch)
        after = await store.read("a", since=0)
        assert ([m.offset for m in after.messages], after.offset) == ([1, 2, 3], 3)
    finally:
        if held is not None:
            held.release.set()
        await store.close()
