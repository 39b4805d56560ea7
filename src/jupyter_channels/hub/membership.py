"""Membership: joining and leaving topics, and presence.

A join subscribes first, holding live messages back, then reads history: the
two together give every message once, with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..channel import Reject
from ..connection import Client, Subscription
from ..constants import CloseCode, ErrorCode, Event
from ..history.base import StoreUnavailable
from ..message import Message
from ..presence import State, diff, make_meta
from ..protocol import JSON, Frame, dumps, encode_event, ws_text_frame
from .base import HookError, HubBase, TopicState
from .permissions import Action
from .reads import join_page, join_reply

log = logging.getLogger(__name__)


def payload_size(payload: dict[str, JSON]) -> int:
    """Bytes of a join payload as JSON (an empty one costs nothing to measure)."""
    return len(dumps(payload).encode()) if payload else 2


class Membership(HubBase):
    """``join`` and ``leave`` frames, dropped connections, and presence."""

    # -- join --------------------------------------------------------------------------------------

    async def _join(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None  # decode() guarantees it for join
        if payload_size(frame.payload) > self.limits.max_join_payload_size:
            # Kept for as long as the subscription lives: bounded like one.
            self._fail(
                client,
                ErrorCode.TOO_LARGE,
                f"join payload is over max_join_payload_size "
                f"({self.limits.max_join_payload_size} bytes)",
                frame.ref,
                topic,
            )
            return
        # Before any hook, and before an existing subscription answers with history.
        refusal = self.permissions.refusal(client.user, Action.JOIN, topic)
        if refusal is not None:
            self._fail(client, ErrorCode.UNAUTHORIZED, refusal, frame.ref, topic)
            return
        can_send = self.permissions.decide(client.user, Action.SEND, topic).allowed
        existing = client.subscriptions.get(topic)
        if existing is not None:
            # Already joined: answer like a join (with history) without running the hook again.
            try:
                page = await join_page(self.broker, self.limits, frame)
            except StoreUnavailable as e:
                self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
                return
            if frame.ref is not None:
                client.send(join_reply(topic, frame.ref, page, can_send=can_send))
            # presence_state follows every join (the client may have lost its copy).
            if existing.presence:
                members = self.presence_state(topic)
                client.send_text(encode_event(Event.PRESENCE_STATE, topic, members))
            return
        if len(client.subscriptions) >= self.limits.max_topics_per_connection:
            self._fail(
                client,
                ErrorCode.TOO_MANY_TOPICS,
                f"already joined max_topics_per_connection "
                f"({self.limits.max_topics_per_connection}) topics",
                frame.ref,
                topic,
            )
            return
        channel = self._channel(client, frame)
        if channel is None:
            return

        # Subscribe first, holding live messages back (see the module's docstring).
        sub = Subscription(client, topic, frame.payload, presence=frame.presence)
        client.subscriptions[topic] = sub
        state = self._topic(topic)
        state.subscribers[client.id] = sub
        try:
            if state.subscribed is not None:
                await state.subscribed
            page = await join_page(self.broker, self.limits, frame)
            await self._hook(
                channel.handle_joined,
                client,
                topic,
                Message(topic, None, frame.payload, frame.ref),
            )
        except Reject as e:
            await self._remove(client, topic, run_hook=False)
            self._fail(client, ErrorCode.JOIN_REJECTED, e.detail, frame.ref, topic)
            return
        except (HookError, StoreUnavailable) as e:
            await self._remove(client, topic, run_hook=False)
            detail = e.detail if isinstance(e, HookError) else str(e)
            self._fail(client, e.code, detail, frame.ref, topic)
            return
        if client.subscriptions.get(topic) is not sub:
            # The connection dropped while handle_joined ran: it was joined, so it leaves.
            with contextlib.suppress(HookError, Reject):
                await self._hook(channel.handle_leave, client, topic)
            return

        if frame.ref is not None:
            client.send(join_reply(topic, frame.ref, page, can_send=can_send))
        sub.last_offset = page.offset
        held, sub.pending = sub.pending or [], None
        for offset, data in held:
            if offset > sub.last_offset:
                sub.last_offset = offset
                client.send(data)

        user = client.user
        meta = make_meta(client.id, client.kind.value, user.display_name, user.initials, user.color)
        joins = state.presence.join(user.username, meta)
        self.broker.track(topic, user.username, meta)
        if sub.presence:
            client.send_text(encode_event(Event.PRESENCE_STATE, topic, state.presence.state()))
        self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(joins=joins)), client)

    # -- leave -------------------------------------------------------------------------------------

    async def _leave(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        if topic not in client.subscriptions:
            self._fail(client, ErrorCode.NOT_JOINED, f"not joined to {topic!r}", frame.ref, topic)
            return
        if client.in_flight:
            # Messages sent before the leave are handled (and seen by the sender) first.
            await asyncio.wait(list(client.in_flight))
        try:
            await self._remove(client, topic)
        except HookError as e:
            self._fail(client, e.code, e.detail, frame.ref, topic)
            return
        self._reply(client, frame)

    async def _drop(self, client: Client) -> None:
        """A connection ended: leave every topic, running ``handle_leave``."""
        for topic in list(client.subscriptions):
            await self._remove(client, topic)
        self.clients.pop(client.id, None)

    async def _remove(self, client: Client, topic: str, *, run_hook: bool = True) -> None:
        """Unsubscribe ``client`` from ``topic``; then run ``handle_leave`` (errors: HookError)."""
        sub = client.subscriptions.pop(topic, None)
        if sub is None:
            return
        state = self.topics.get(topic)
        if state is not None:
            state.subscribers.pop(client.id, None)
            leaves = state.presence.leave(client.id)
            if leaves:
                self.broker.untrack(topic, client.id)
                self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(leaves=leaves)))
            if not state.subscribers:
                del self.topics[topic]
                await self.broker.unsubscribe(topic)
        channel = self.router.match(topic)
        if run_hook and sub.pending is None and channel is not None:
            try:
                await self._hook(channel.handle_leave, client, topic)
            except Reject:
                pass  # nothing to refuse on leave
            except HookError:
                if not client.closed:
                    raise

    def kick(self, client_id: str, topic: str, reason: str) -> asyncio.Task[None]:
        """End one subscription: a ``close`` frame, then ``handle_leave``."""
        return self._spawn(self._kick(client_id, topic, reason))

    async def _kick(self, client_id: str, topic: str, reason: str) -> None:
        client = self.clients.get(client_id)
        if client is None or topic not in client.subscriptions:
            return
        client.send_text(encode_event(Event.CLOSE, topic, {"reason": reason}))
        with contextlib.suppress(HookError):  # already logged by _hook
            await self._remove(client, topic)

    # -- presence ----------------------------------------------------------------------------------

    def _to_topic(self, state: TopicState, text: str, skip: Client | None = None) -> None:
        """Send a presence frame to every joined subscriber that wants presence.

        Each join or leave reaches every member: N members joining cost N x N frames,
        which is why a join may say ``"presence": false``.
        """
        data = ws_text_frame(text)
        for sub in state.subscribers.values():
            if sub.pending is None and sub.presence and sub.client is not skip:
                sub.client.send(data)

    def _remote_presence(self, topic: str, joins: State, leaves: State) -> None:
        """Broker callback: members on other servers came or went."""
        state = self.topics.get(topic)
        if state is None:
            return
        for entry in leaves.values():
            for meta in entry["metas"]:
                state.presence.leave(meta["phx_ref"])
        for username, entry in joins.items():
            for meta in entry["metas"]:
                state.presence.join(username, meta)
        self._to_topic(state, encode_event(Event.PRESENCE_DIFF, topic, diff(joins, leaves)))

    def _history_lost(self, topic: str) -> None:
        """Broker callback: the topic's offsets start again. Subscribers' offsets are void;
        closing their connections makes clients reconnect and rejoin with ``since``."""
        state = self.topics.get(topic)
        if state is None:
            return
        log.warning(
            "history of %r was lost; its %d subscribers reconnect", topic, len(state.subscribers)
        )
        for sub in list(state.subscribers.values()):
            sub.client.close(CloseCode.SERVICE_RESTART, "history lost: rejoin")

    def presence_state(self, topic: str) -> dict[str, Any]:
        state = self.topics.get(topic)
        return state.presence.state() if state is not None else {}

    async def topic_presence(self, topic: str) -> State:
        """Every server's members of ``topic`` (raises ``StoreUnavailable``)."""
        state = self.topics.get(topic)
        if state is not None:
            return state.presence.state()
        return (await self.broker.remote_presence([topic])).get(topic, {})
