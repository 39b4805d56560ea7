"""Reads: the history a join replies with, ``history`` pages, and the topic list."""

from __future__ import annotations

from typing import Any

from ..connection import Client
from ..constants import ErrorCode, Status
from ..history.base import Page, StoreUnavailable
from ..protocol import Frame, Ref, dumps, encode_reply
from .base import HubBase


def join_reply(topic: str, ref: Ref, page: Page) -> str:
    """The ok reply to a join: the topic's offset and epoch, and the page read for it."""
    frames = ",".join(m.frame for m in page.messages)
    response = (
        f'{{"offset":{page.offset},"epoch":{dumps(page.epoch)},'
        f'"recovered":{"true" if page.recovered else "false"},"messages":[{frames}]}}'
    )
    return encode_reply(topic, ref, response, Status.OK)


class Reads(HubBase):
    """``history`` frames and the REST topic list."""

    async def _history(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        sub = client.subscriptions.get(topic)
        if sub is None or sub.pending is not None:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return
        if frame.ref is None:
            return
        try:
            page = await self.broker.read(topic, before=frame.before, limit=frame.limit)
        except StoreUnavailable as e:
            self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
            return
        frames = ",".join(m.frame for m in page.messages)
        client.send_text(encode_reply(topic, frame.ref, f'{{"messages":[{frames}]}}', Status.OK))

    async def topic_list(self) -> list[dict[str, Any]]:
        offsets = await self.broker.topics()
        remote = await self.broker.remote_presence()
        names = set(offsets) | set(remote) | {t for t, s in self.topics.items() if len(s.presence)}
        return [
            {
                "topic": name,
                "members": len(self.topics[name].presence.usernames())
                if name in self.topics
                else len(remote.get(name, {})),
                "offset": offsets.get(name, 0),
            }
            for name in sorted(names)
        ]
