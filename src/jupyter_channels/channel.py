"""The channel contract: what a topic does when clients join, speak and leave.

A :class:`Channel` serves every topic matching its pattern (``"chat_room:*"``).
Write one by subclassing it and register it with
``c.ChannelsApp.channels = {"chat_room:*": "mypkg.chat:ChatRoomChannel"}`` or the
entry-point group ``jupyter_channels.channels``.

Topics
    Patterns are an exact topic (``"chat_room:42"``), a prefix (``"chat_room:*"``)
    or ``"*"``. The most specific pattern wins: exact, then the longest prefix,
    then ``"*"``. The built-in :class:`RebroadcastChannel` serves ``"*"``::

        c.ChannelsApp.channels = {"chat_room:*": "mypkg.chat:ChatRoomChannel"}
        c.ChannelsApp.default_channel = None   # serve only configured patterns

Authorization
    :meth:`Channel.handle_joined` runs before the client is joined. Raise
    :class:`Reject` to refuse; the client gets a ``join_rejected`` error reply
    carrying your detail::

        async def handle_joined(self, client, message):
            if message.payload.get("invite") != "ok":
                raise Reject("invite required")

Incoming
    :meth:`Channel.handle_message` runs for every ``message`` frame of a joined
    client. Nothing reaches other clients unless it says so::

        async def handle_message(self, client, message):
            await self.rebroadcast(message)

Broadcasts
    ``rebroadcast(message)`` and ``broadcast(subject, payload)`` store a message
    in the topic's history (it gets the next offset) and send it to every
    subscriber, sender included; ``broadcast_from(client, ...)`` skips that
    client; ``push(client, ...)`` sends one ``message`` frame to one client,
    outside history (its ``offset`` is ``null``). Each starts at once and
    returns an awaitable: ``await`` it to know the message is stored (it
    raises ``jupyter_channels.history.StoreUnavailable``
    if it could not be). ``topic`` defaults to the
    topic of the hook being run::

        def handle_joined(self, client, message):        # a plain function works
            self.broadcast("user_joined", {"name": client.user.display_name})

Replies
    A client frame that carries a ``ref`` gets a reply once the hook returns and
    everything it published is stored. Its ``response`` is ``{"offset": n}`` (the
    last offset the hook published), updated with the dict the hook returns::

        async def handle_message(self, client, message):
            await self.rebroadcast(message)
            return {"accepted": True}          # -> {"offset": 7, "accepted": True}

Leaving
    :meth:`Channel.handle_leave` runs when the client leaves the topic, when its
    connection drops, and when the channel removes it with :meth:`Channel.kick`::

        async def handle_leave(self, client):
            await self.broadcast("user_left", {"name": client.user.display_name})

Errors
    An exception escaping a hook is logged and answered with ``internal_error``;
    other clients and topics carry on. Hooks may be plain functions or
    coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from .message import Message
from .protocol import JSON, is_topic

if TYPE_CHECKING:
    from .connection import Client
    from .hub import Hub


class Reject(Exception):
    """Raised by :meth:`Channel.handle_joined` to refuse a join.

    The client receives a ``join_rejected`` error reply whose ``detail`` is the
    exception's message.
    """

    def __init__(self, detail: str = "join rejected") -> None:
        super().__init__(detail)
        self.detail = detail


class Channel:
    """Base class of every channel; see the module documentation for the contract."""

    def __init__(self, hub: Hub, pattern: str) -> None:
        self.hub = hub
        self.pattern = pattern

    # -- hooks --------------------------------------------------------------------

    def handle_joined(self, client: Client, message: Message) -> Awaitable[None] | None:
        """Called when ``client`` asks to join ``message.topic`` (``message.payload``
        holds the join params). Raise :class:`Reject` to refuse. May return nothing."""
        return None

    def handle_message(
        self, client: Client, message: Message
    ) -> Awaitable[dict[str, JSON] | None] | dict[str, JSON] | None:
        """Called for each ``message`` frame of a joined client. Required.

        May return a dict: it becomes the ``response`` of the ok reply.
        """
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")

    def handle_leave(self, client: Client) -> Awaitable[None] | None:
        """Called once when ``client`` leaves a topic of this channel: an explicit
        ``leave``, a dropped connection, or :meth:`kick`. The topic is
        :meth:`current_topic`. May return nothing."""
        return None

    # -- actions --------------------------------------------------------------------

    def current_topic(self) -> str:
        """The topic of the hook being run."""
        return self.hub.context_topic()

    def _topic(self, topic: str | None) -> str:
        topic = self.current_topic() if topic is None else topic
        if not is_topic(topic):
            raise ValueError(f"invalid topic {topic!r}")
        return topic

    def rebroadcast(self, message: Message) -> Awaitable[int | None]:
        """Store ``message`` and send it to every subscriber of its topic, sender included.

        Awaiting the result gives the message's offset. An ephemeral message (a
        ``typing`` frame) is sent to the topic's current subscribers only, never
        stored: awaiting it gives ``None``.
        """
        return self.hub.publish(
            message.topic,
            message.subject or "message",
            message.payload,
            ephemeral=message.ephemeral,
        )

    def broadcast(self, subject: str, payload: JSON, *, topic: str | None = None) -> Awaitable[int]:
        """Store a message and send it to every subscriber of the topic."""
        return cast(Awaitable[int], self.hub.publish(self._topic(topic), subject, payload))

    def broadcast_from(
        self, client: Client, subject: str, payload: JSON, *, topic: str | None = None
    ) -> Awaitable[int]:
        """Like :meth:`broadcast`, but ``client`` does not receive it live."""
        published = self.hub.publish(self._topic(topic), subject, payload, exclude=client.id)
        return cast(Awaitable[int], published)

    def push(
        self, client: Client, subject: str, payload: JSON, *, topic: str | None = None
    ) -> Awaitable[None]:
        """Send one ``message`` frame to ``client`` only; it is not stored."""
        return self.hub.push(client.id, self._topic(topic), subject, payload)

    def kick(self, client: Client, reason: str, *, topic: str | None = None) -> Awaitable[None]:
        """End ``client``'s subscription: it gets a ``close`` frame, then ``handle_leave`` runs."""
        return self.hub.kick(client.id, self._topic(topic), reason)


class RebroadcastChannel(Channel):
    """The built-in channel on ``"*"``: every message goes to every subscriber."""

    async def handle_message(self, client: Client, message: Message) -> None:
        await self.rebroadcast(message)


def _specificity(pattern: str) -> tuple[int, int]:
    if pattern == "*":
        return (0, 0)
    if pattern.endswith("*"):
        return (1, len(pattern))
    return (2, len(pattern))


def is_pattern(pattern: str) -> bool:
    """Whether ``pattern`` is ``"*"``, ``"prefix*"`` (usually ``"prefix:*"``) or a topic."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return is_topic(pattern[:-1])
    return is_topic(pattern)


@dataclass
class Router:
    """Finds the channel serving a topic: exact, then the longest prefix, then ``"*"``."""

    channels: dict[str, Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ordered = self._order(self.channels)

    @staticmethod
    def _order(channels: dict[str, Channel]) -> list[tuple[str, Channel]]:
        return sorted(channels.items(), key=lambda item: _specificity(item[0]), reverse=True)

    def add(self, pattern: str, channel: Channel) -> None:
        if not is_pattern(pattern):
            raise ValueError(f"invalid channel pattern {pattern!r}")
        self.channels[pattern] = channel
        self._ordered = self._order(self.channels)

    def match(self, topic: str) -> Channel | None:
        """The channel for ``topic``, or ``None`` (then a join gets ``unmatched_topic``)."""
        exact = self.channels.get(topic)
        if exact is not None:
            return exact
        for pattern, channel in self._ordered:
            if pattern == "*" or (pattern.endswith("*") and topic.startswith(pattern[:-1])):
                return channel
        return None

    def patterns(self) -> Iterable[str]:
        return (pattern for pattern, _ in self._ordered)
