"""Reads: the history a join replies with, ``history`` pages, and the topic list."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..brokers.base import Broker
from ..connection import Client
from ..constants import MAX_HISTORY_LIMIT, MAX_TOPIC_PAGE, ErrorCode, Status
from ..history.base import Page, StoreUnavailable
from ..protocol import (
    REPLY_TAIL,
    Frame,
    Ref,
    WsFrame,
    dumps,
    reply_head,
    ws_text_frame_of,
)
from .base import HubBase, Limits


def reply_budget(limits: Limits) -> int:
    """Bytes of messages one reply may hold: well under ``max_queued_bytes``, so a reply
    leaves room for live traffic and never closes its connection as a slow consumer."""
    return limits.max_queued_bytes // 4


#: What a join's page is read by: topic, since, limit, max_bytes.
ReadKey = tuple[str, int | None, int, int]


class SharedReads:
    """Join pages read once for every join asking for the same page at the same time.

    A join waits for a read that starts after it subscribed (the next turn of the event
    loop): a read already under way may miss a message delivered before that join held
    live messages back. So joins arriving together (a reconnect storm, all with the
    same ``since``) share one read, and the reply frames share its message bytes.
    """

    def __init__(self, broker: Broker, limits: Limits) -> None:
        self.broker = broker
        self.limits = limits
        self._queued: dict[ReadKey, asyncio.Future[Page]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Reads started, and joins answered from them (for benchmarks and tests).
        self.reads = 0
        self.joins = 0

    async def page(self, frame: Frame) -> Page:
        topic = frame.topic
        assert topic is not None  # decode() guarantees it for join
        limit = frame.history if frame.since is None else MAX_HISTORY_LIMIT
        key: ReadKey = (topic, frame.since, limit, reply_budget(self.limits))
        future = self._queued.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._queued[key] = loop.create_future()
            loop.call_soon(self._start, key, future)
        self.joins += 1
        # Shielded: a joiner whose connection drops must not cancel the others' read.
        return await asyncio.shield(future)

    def _start(self, key: ReadKey, future: asyncio.Future[Page]) -> None:
        if self._queued.get(key) is future:
            del self._queued[key]
        self.reads += 1
        task = asyncio.ensure_future(self._read(key, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, key: ReadKey, future: asyncio.Future[Page]) -> None:
        topic, since, limit, max_bytes = key
        try:
            page = await self.broker.read(topic, since=since, limit=limit, max_bytes=max_bytes)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:  # StoreUnavailable: every joiner of this read is told
            if not future.done():
                future.set_exception(e)
            return
        if not future.done():
            future.set_result(page)


def message_parts(page: Page) -> list[bytes]:
    """The page's frames, comma separated, as the store read them (never joined into a copy)."""
    parts: list[bytes] = []
    for message in page.messages:
        if parts:
            parts.append(b",")
        parts.append(message.frame)
    return parts


def truncated_field(page: Page) -> str:
    """``"truncated":true,`` when the page left messages out; nothing otherwise."""
    return '"truncated":true,' if page.truncated else ""


def _reply(topic: str, ref: Ref, fields: str, page: Page) -> WsFrame:
    head = reply_head(topic, ref, Status.OK) + f'{{{fields}"messages":['
    return ws_text_frame_of([head.encode(), *message_parts(page), ("]}" + REPLY_TAIL).encode()])


def join_reply(topic: str, ref: Ref, page: Page, *, can_send: bool = True) -> WsFrame:
    """The ok reply to a join: the topic's offset and epoch, and the page read for it;
    ``"can_send":false`` when the client may read the topic but not send to it."""
    # Only a refusal is written: replies of topics anyone may send to stay as they were.
    read_only = "" if can_send else '"can_send":false,'
    fields = (
        f'"offset":{page.offset},"epoch":{dumps(page.epoch)},'
        f'"recovered":{"true" if page.recovered else "false"},{truncated_field(page)}{read_only}'
    )
    return _reply(topic, ref, fields, page)


class Reads(HubBase):
    """``history`` frames and the REST topic list."""

    async def _history(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        sub = self._joined(client, frame)
        if sub is None:
            return
        if frame.ref is None:
            return
        try:
            page = await self.broker.read(
                topic,
                before=frame.before,
                limit=frame.limit,
                max_bytes=reply_budget(self.limits),
            )
        except StoreUnavailable as e:
            self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
            return
        client.send(_reply(topic, frame.ref, truncated_field(page), page))

    async def topic_list(
        self,
        *,
        after: str | None = None,
        limit: int = MAX_TOPIC_PAGE,
        visible: Callable[[str], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Topics with members or history (and ``visible``, when given), by name, the first
        ``limit`` after ``after``; and whether more follow."""
        offsets = await self.broker.topics()
        remote = await self.broker.remote_presence()
        names = set(offsets) | set(remote) | {t for t, s in self.topics.items() if len(s.presence)}
        ordered = sorted(
            name
            for name in names
            if (after is None or name > after) and (visible is None or visible(name))
        )
        page = ordered[: max(limit, 0)]
        topics = [
            {
                "topic": name,
                "members": len(self.topics[name].presence.usernames())
                if name in self.topics
                else len(remote.get(name, {})),
                "offset": offsets.get(name, 0),
            }
            for name in page
        ]
        return topics, len(ordered) > len(page)
