"""``Message``: one message of a topic, as channel hooks and the Python client see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .protocol import JSON, Ref


@dataclass(frozen=True, slots=True)
class Message:
    """A message of ``topic``.

    In a channel hook it is the client's frame (``ref`` set when the frame had
    one; for ``handle_joined``, ``payload`` holds the join params). In the
    Python client it is a received message: ``offset`` and ``ts`` (ms since
    the epoch) as the server numbered it, and ``sender``, the server-stamped
    ``from``: ``{"id", "user", "name", "kind"}``. A ``push`` has no offset.
    """

    topic: str
    subject: str | None
    payload: JSON
    ref: Ref | None = None
    offset: int | None = None
    ts: int | None = None
    sender: dict[str, Any] | None = None

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        """A ``message`` frame (or an entry of a join or history reply) as a Message."""
        return cls(
            topic=frame["topic"],
            subject=frame.get("subject"),
            payload=frame.get("payload"),
            offset=frame.get("offset"),
            ts=frame.get("ts"),
            sender=frame.get("from"),
        )

    def fields(self) -> dict[str, Any]:
        """The received message's fields under their wire names (``from`` for ``sender``):
        what ``from_frame`` read, without the ``event``."""
        return {
            "topic": self.topic,
            "subject": self.subject,
            "payload": self.payload,
            "offset": self.offset,
            "ts": self.ts,
            "from": self.sender,
        }
