"""The embedded history store: SQLite in WAL mode, written in group commits.

Offsets are numbered in memory at ``append`` (from the last committed offset of
each topic, read at ``open``) and made durable by a single writer thread that
commits every message queued since its last commit in one transaction. A
failed commit fails that batch and everything queued behind it and rewinds the
numbering, so offsets stay gapless and are never reused.

Reads run on their own threads and connections, each in one read transaction:
WAL lets them read the last commit while the writer writes, so a big read
never holds up publishing, and a page never holds part of a batch. A
``":memory:"`` database lives in one connection, so there reads wait for the
writer's thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .base import Draft, HistoryStore, Page, Retained, StoredMessage, StoreUnavailable, within

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    offset INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    frame TEXT NOT NULL,
    PRIMARY KEY (topic, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutes (
    topic TEXT NOT NULL,
    username TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (topic, username)
) WITHOUT ROWID;
"""

#: Reads that may run at once, each on its own connection.
READERS = 2

_COLUMNS = "offset, ts, CAST(frame AS BLOB)"


class SqliteHistory(HistoryStore):
    """History in one SQLite file (``":memory:"`` for a store that ends with the process)."""

    def __init__(self, path: str | Path, history_size: int) -> None:
        super().__init__(history_size)
        self.path = str(path)
        self.epoch = ""
        self._last: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self._queue: list[tuple[StoredMessage, asyncio.Future[StoredMessage]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="channels-history")
        self._db: sqlite3.Connection | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_db = threading.local()
        self._reader_dbs: list[sqlite3.Connection] = []

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        if row is None:
            epoch = uuid.uuid4().hex[:16]
            db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        else:
            epoch = row[0]
        self.epoch = epoch
        self._committed = dict(db.execute("SELECT topic, last FROM topics").fetchall())
        # Mutes are few: all of them live in memory, written through to the table.
        db.execute("DELETE FROM mutes WHERE until <= ?", (int(time.time() * 1000),))
        rows = db.execute("SELECT topic, username, until FROM mutes").fetchall()
        self.mutes = {(topic, username): until for topic, username, until in rows}
        self._last = dict(self._committed)
        self._db = db
        if self.path != ":memory:":
            self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="channels-history-read")

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        db, self._db = self._db, None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        for reader in self._reader_dbs:
            reader.close()
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer, db.close)
        self._writer.shutdown(wait=True)

    # -- writing ----------------------------------------------------------------------------

    def append(self, draft: Draft) -> asyncio.Future[StoredMessage]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredMessage] = loop.create_future()
        if self._db is None:
            future.set_exception(StoreUnavailable("the history store is closed"))
            return future
        if draft.topic not in self._last and len(self._last) >= self.max_topics:
            future.set_exception(self.refuse_new_topic())
            return future
        offset = self._last.get(draft.topic, 0) + 1
        self._last[draft.topic] = offset
        message = draft.stored(offset, int(time.time() * 1000))
        self._queue.append((message, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                messages = [message for message, _ in batch]
                try:
                    await loop.run_in_executor(self._writer, self._write, messages)
                except Exception as e:
                    # Whatever failed (the disk, a closed store, text UTF-8 cannot carry),
                    # the senders must hear of it: escaping here would strand their futures.
                    log.error("history store: could not commit %d messages: %s", len(batch), e)
                    self._fail(batch + self._queue, e)
                    self._queue = []
                    continue
                for message in messages:
                    self._committed[message.topic] = message.offset
                if self.on_commit is not None:
                    try:
                        self.on_commit(messages)
                    except Exception:
                        # Stored is stored: a delivery bug must not leave senders waiting.
                        log.exception("history store: delivering committed messages failed")
                for message, future in batch:
                    if not future.done():
                        future.set_result(message)
        finally:
            self._flusher = None

    def _fail(
        self, batch: list[tuple[StoredMessage, asyncio.Future[StoredMessage]]], error: Exception
    ) -> None:
        self._last = dict(self._committed)
        for _, future in batch:
            if not future.done():
                future.set_exception(StoreUnavailable(f"history store write failed: {error}"))

    def _write(self, messages: list[StoredMessage]) -> None:
        db = self._db
        if db is None:
            raise RuntimeError("the history store is closed")
        last: dict[str, int] = {}
        for message in messages:
            last[message.topic] = message.offset
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO messages (topic, offset, ts, frame) VALUES (?, ?, ?, ?)",
                [(m.topic, m.offset, m.ts, m.frame) for m in messages],
            )
            db.executemany(
                "INSERT INTO topics (topic, last) VALUES (?, ?)"
                " ON CONFLICT(topic) DO UPDATE SET last = excluded.last",
                list(last.items()),
            )
            db.executemany(
                "DELETE FROM messages WHERE topic = ? AND offset <= ?",
                [(topic, offset - self.history_size) for topic, offset in last.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def mute(self, topic: str, username: str, until: int | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._write_mute, topic, username, until)
        except (sqlite3.Error, RuntimeError) as e:
            raise StoreUnavailable(f"history store write failed: {e}") from e
        await super().mute(topic, username, until)

    def _write_mute(self, topic: str, username: str, until: int | None) -> None:
        db = self._db
        if db is None:
            raise RuntimeError("the history store is closed")
        if until is None:
            db.execute("DELETE FROM mutes WHERE topic = ? AND username = ?", (topic, username))
        else:
            db.execute(
                "INSERT INTO mutes (topic, username, until) VALUES (?, ?, ?)"
                " ON CONFLICT(topic, username) DO UPDATE SET until = excluded.until",
                (topic, username, until),
            )

    # -- reading ----------------------------------------------------------------------------

    async def message_at(self, topic: str, offset: int) -> Retained | None:
        loop = asyncio.get_running_loop()
        executor = self._writer if self._readers is None else self._readers
        try:
            return await loop.run_in_executor(executor, self._message_at, topic, offset)
        except (sqlite3.Error, RuntimeError) as e:
            raise StoreUnavailable(f"history store read failed: {e}") from e

    def _message_at(self, topic: str, offset: int) -> Retained | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND offset = ?", (topic, offset)
            )
            .fetchone()
        )
        return None if row is None else Retained(*row)

    async def read(
        self,
        topic: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
    ) -> Page:
        loop = asyncio.get_running_loop()
        executor = self._writer if self._readers is None else self._readers
        try:
            return await loop.run_in_executor(
                executor, self._read, topic, since, before, limit, max_bytes
            )
        except (sqlite3.Error, RuntimeError) as e:
            raise StoreUnavailable(f"history store read failed: {e}") from e

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (the writer's for ``":memory:"``)."""
        if self._db is None:
            raise RuntimeError("the history store is closed")
        if self._readers is None:
            return self._db
        db: sqlite3.Connection | None = getattr(self._reader_db, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA query_only=ON")
            self._reader_db.db = db
            self._reader_dbs.append(db)
        return db

    def _read(
        self, topic: str, since: int | None, before: int | None, limit: int, max_bytes: int | None
    ) -> Page:
        db = self._reader()
        # One transaction: the page and the topic's offset come from the same commit.
        db.execute("BEGIN")
        try:
            return self._page(db, topic, since, before, limit, max_bytes)
        finally:
            db.execute("COMMIT")

    def _page(
        self,
        db: sqlite3.Connection,
        topic: str,
        since: int | None,
        before: int | None,
        limit: int,
        max_bytes: int | None,
    ) -> Page:
        row = db.execute("SELECT last FROM topics WHERE topic = ?", (topic,)).fetchone()
        last = row[0] if row else 0
        if since is not None:
            first = db.execute(
                "SELECT MIN(offset) FROM messages WHERE topic = ?", (topic,)
            ).fetchone()[0]
            recovered = since == last or (since < last and first is not None and first <= since + 1)
            if recovered:
                query = f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND offset > ?"
                rows = db.execute(query + " ORDER BY offset LIMIT ?", (topic, since, limit))
                messages, _ = within(_retained(rows), max_bytes)
                truncated = (messages[-1].offset if messages else since) < last
                return Page(messages, last, self.epoch, True, truncated)
            limit = min(limit, self.history_size)
            newest, truncated = self._newest(db, topic, last + 1, limit, max_bytes)
            # Asked for everything after ``since``: older retained ones left out count too.
            truncated = truncated or bool(newest and newest[0].offset > first)
            return Page(newest, last, self.epoch, False, truncated)
        # Clamped: no offset is above ``last``, and SQLite integers stop at 2**63 - 1.
        end = last + 1 if before is None else min(before, last + 1)
        newest, truncated = self._newest(db, topic, end, limit, max_bytes)
        return Page(newest, last, self.epoch, True, truncated)

    @staticmethod
    def _newest(
        db: sqlite3.Connection, topic: str, before: int, limit: int, max_bytes: int | None
    ) -> tuple[list[Retained], bool]:
        if limit <= 0:
            return [], False
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE topic = ? AND offset < ?"
            " ORDER BY offset DESC LIMIT ?",
            (topic, before, limit),
        )
        messages, truncated = within(_retained(rows), max_bytes)
        messages.reverse()
        return messages, truncated

    async def topics(self) -> dict[str, int]:
        return dict(self._committed)


def _retained(rows: sqlite3.Cursor) -> Iterator[Retained]:
    """Rows as they are fetched: a page that is full stops reading them."""
    for offset, ts, frame in rows:
        yield Retained(offset, ts, frame)
