"""``Message``: one message of a topic, as channel hooks and the Python client see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .protocol import JSON, Ref


class Editor(Protocol):
    """What a received message edits and deletes itself through: its subscription."""

    def edit(self, offset: int, text: str, *, timeout: float | None = None) -> Any: ...

    def delete(self, offset: int, *, timeout: float | None = None) -> Any: ...


class Bound(Protocol):
    """The subscription a message was received on; ``api`` is the one its user holds
    (the blocking ``Subscription`` or the asyncio one)."""

    @property
    def api(self) -> Editor: ...


@dataclass(frozen=True, slots=True)
class Message:
    """A message of ``topic``.

    In a channel hook it is the client's frame (``ref`` set when the frame had
    one; for ``handle_joined``, ``payload`` holds the join params). In the
    Python client it is a received message: ``offset`` and ``ts`` (ms since
    the epoch) as the server numbered it, and ``sender``, the server-stamped
    ``from``: ``{"id", "user", "name", "kind"}``. A ``push`` and an
    ``ephemeral`` message have no offset.
    """

    topic: str
    subject: str | None
    payload: JSON
    ref: Ref | None = None
    offset: int | None = None
    ts: int | None = None
    sender: dict[str, Any] | None = None
    #: Fanned out to the subscribers of the moment, never stored (``typing``).
    ephemeral: bool = False
    #: The subscription it was received on (the Python client), for ``edit``/``delete``.
    subscription: Bound | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict[str, Any], subscription: Bound | None = None) -> Message:
        """A ``message`` frame (or an entry of a join or history reply) as a Message."""
        return cls(
            topic=frame["topic"],
            subject=frame.get("subject"),
            payload=frame.get("payload"),
            offset=frame.get("offset"),
            ts=frame.get("ts"),
            sender=frame.get("from"),
            ephemeral=frame.get("ephemeral") is True,
            subscription=subscription,
        )

    def fields(self) -> dict[str, Any]:
        """The received message's fields under their wire names (``from`` for ``sender``):
        what ``from_frame`` read, without the ``event``."""
        fields = {
            "topic": self.topic,
            "subject": self.subject,
            "payload": self.payload,
            "offset": self.offset,
            "ts": self.ts,
            "from": self.sender,
        }
        if self.ephemeral:
            fields["ephemeral"] = True
        return fields

    def _editor(self) -> tuple[Editor, int]:
        if self.subscription is None or self.offset is None:
            raise ValueError(
                "only a stored message received on a subscription can be edited or deleted"
            )
        return self.subscription.api, self.offset

    def edit(self, text: str, *, timeout: float | None = None) -> Any:
        """Replace this ``text`` message's text: sends an ``edit`` message referring to it.

        Returns what the subscription's ``edit`` returns (the edit's offset; a
        coroutine on the asyncio client). Allowed to its author and to moderators;
        raises ``ChannelError`` (``unauthorized``) otherwise.
        """
        editor, offset = self._editor()
        return editor.edit(offset, text, timeout=timeout)

    def delete(self, *, timeout: float | None = None) -> Any:
        """Delete this ``text`` message: sends a ``delete`` message referring to it (as
        :meth:`edit`)."""
        editor, offset = self._editor()
        return editor.delete(offset, timeout=timeout)
