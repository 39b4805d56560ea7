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
from ..constants import CloseCode, ErrorCode, Event, Status
from ..history.base import StoreUnavailable
from ..message import Message
from ..presence import Entry, State, diff, make_meta
from ..protocol import (
    JSON,
    Frame,
    WsFrame,
    dumps,
    encode_event,
    encode_reply,
    ws_text_frame,
    ws_text_frame_of,
)
from .base import HookError, HubBase, TopicState
from .permissions import Action
from .reads import SharedReads, join_reply

log = logging.getLogger(__name__)


def payload_size(payload: dict[str, JSON]) -> int:
    """Bytes of a join payload as JSON (an empty one costs nothing to measure)."""
    return len(dumps(payload).encode()) if payload else 2


class Membership(HubBase):
    """``join`` and ``leave`` frames, dropped connections, and presence."""

    shared_reads: SharedReads

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
        retry_after = self._join_wait()
        if retry_after is not None:
            detail = "the server is admitting joins at its join_rate: join again after retry_after"
            if frame.ref is None:
                self._fail(client, ErrorCode.UNAVAILABLE, detail, None, topic)
            else:
                response: dict[str, JSON] = {
                    "reason": ErrorCode.UNAVAILABLE.value,
                    "detail": detail,
                    "retry_after": retry_after,
                }
                client.send_text(encode_reply(topic, frame.ref, dumps(response), Status.ERROR))
            return
        can_send = self.permissions.decide(client.user, Action.SEND, topic).allowed
        existing = client.subscriptions.get(topic)
        if existing is not None:
            # Already joined: answer like a join (with history) without running the hook again.
            try:
                page = await self.shared_reads.page(frame)
            except StoreUnavailable as e:
                self._fail(client, ErrorCode.UNAVAILABLE, str(e), frame.ref, topic)
                return
            if frame.ref is not None:
                client.send(join_reply(topic, frame.ref, page, can_send=can_send))
            # presence_state follows every join (the client may have lost its copy).
            state = self.topics.get(topic)
            if existing.presence and state is not None:
                client.send(self._state_frame(topic, state, client.id))
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
            page = await self.shared_reads.page(frame)
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
        self.broker.track(topic, user.username, meta)
        self._presence_change(topic, state, meta["phx_ref"], (user.username, meta), skip=client)
        if sub.presence:
            client.send(self._state_frame(topic, state, client.id))

    def _join_wait(self) -> int | None:
        """``None`` when a join may go ahead now (``join_rate``, after ``join_burst``);
        else the milliseconds after which the client should join again. Refused joins are
        given successive slots ``1 / join_rate`` apart, so a storm comes back spread out
        at the rate the server admits instead of all at once."""
        rate = self.limits.join_rate
        if rate <= 0:
            return None
        now = asyncio.get_running_loop().time()
        period = 1.0 / rate
        window = max(self.limits.join_burst, 1) * period
        due = max(self._join_due, now) + period
        if due - now <= window:
            self._join_due = due
            return None
        slot = max(self._join_slot + period, due - window)
        self._join_slot = slot
        self.joins_refused += 1
        return max(1, round((slot - now) * 1000))

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
            if state.presence.get(client.id) is not None:
                self.broker.untrack(topic, client.id)
                self._presence_change(topic, state, client.id, None)
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
    #
    # A topic's joins and leaves (here and, through the broker, on other servers) are
    # sent as one ``presence_diff`` per ``presence_interval``. A change to a quiet topic
    # goes out at once; the changes that follow it within the interval are collected and
    # sent together at its end, so N members joining together cost about one diff per
    # interval instead of N x N frames. A joiner is sent the members as of the topic's
    # last diff (encoded once for every joiner until the next one), which the next diff
    # brings up to date; on a quiet topic that is at once, and includes the joiner.

    def _to_topic(self, state: TopicState, text: str, skip: Client | None = None) -> None:
        """Send a presence frame to every joined subscriber that wants presence
        (encoded and framed once)."""
        data = ws_text_frame(text)
        for sub in state.subscribers.values():
            if sub.pending is None and sub.presence and sub.client is not skip:
                sub.client.send(data)

    def _state_frame(self, topic: str, state: TopicState, conn_id: str) -> WsFrame:
        """The ``presence_state`` a joiner (``conn_id``) is sent now: the members as of the
        last diff, encoded once for every joiner until the next one, and the joiner itself."""
        if state.state_open is None:
            state.snapshot = state.presence.state_before(state.changed)
            payload = dumps(state.snapshot)
            # Kept open, without the closing braces, for a joiner's own entry to follow.
            state.state_open = encode_event(Event.PRESENCE_STATE, topic, None)[:-5].encode() + (
                payload[:-1].encode()
            )
            state.state_frame = ws_text_frame_of([state.state_open, b"}}"])
        own = state.presence.get(conn_id)
        if own is None or conn_id not in state.changed:
            assert state.state_frame is not None
            return state.state_frame  # in it already (or not a member)
        username, meta = own
        members = state.snapshot or {}
        if username not in members:
            entry = f"{dumps(username)}:{dumps({'metas': [meta]})}}}}}".encode()
            return ws_text_frame_of([state.state_open, b"," if members else b"", entry])
        # Another connection of the same user is listed: this user's entry is written again.
        metas = [m for m in members[username]["metas"] if m["phx_ref"] != conn_id]
        listed = {**members, username: {"metas": [*metas, meta]}}
        return ws_text_frame(encode_event(Event.PRESENCE_STATE, topic, listed))

    def _presence_change(
        self,
        topic: str,
        state: TopicState,
        conn_id: str,
        entry: Entry | None,
        *,
        skip: Client | None = None,
    ) -> None:
        """``conn_id`` joined (``entry``: its username and meta) or left (``None``);
        ``skip`` is told by its own ``presence_state`` instead, if the diff goes now."""
        if conn_id not in state.changed:
            state.changed[conn_id] = state.presence.get(conn_id)
        if entry is None:
            state.presence.leave(conn_id)
        else:
            state.presence.join(*entry)
        if self._presence_due.get(topic) is state:
            return  # sent at the end of this interval
        interval = self.limits.presence_interval
        now = asyncio.get_running_loop().time()
        if now - state.last_diff >= interval:
            self._send_diff(topic, state, now, skip)
            return
        self._presence_due[topic] = state
        if self._presence_timer is None:
            self._presence_timer = asyncio.get_running_loop().call_at(
                state.last_diff + interval, self._send_due_diffs
            )

    def _send_diff(
        self, topic: str, state: TopicState, now: float, skip: Client | None = None
    ) -> None:
        joins, leaves = state.presence.changes_since(state.changed)
        if skip is None and len(state.changed) == 1:
            # A joiner's own presence_state listed it: the diff of its join alone is not
            # news to it (as when the diff goes out with the join).
            ((conn_id, before),) = state.changed.items()
            sub = state.subscribers.get(conn_id)
            if before is None and sub is not None:
                skip = sub.client
        state.changed = {}
        state.state_open = state.state_frame = state.snapshot = None
        state.last_diff = now
        if joins or leaves:
            self._to_topic(
                state, encode_event(Event.PRESENCE_DIFF, topic, diff(joins, leaves)), skip
            )

    def _send_due_diffs(self) -> None:
        """End of an interval: one ``presence_diff`` per topic whose members changed."""
        self._presence_timer = None
        due, self._presence_due = self._presence_due, {}
        now = asyncio.get_running_loop().time()
        for topic, state in due.items():
            if self.topics.get(topic) is state:  # else everyone here left: nobody to tell
                self._send_diff(topic, state, now)

    def _remote_presence(self, topic: str, joins: State, leaves: State) -> None:
        """Broker callback: members on other servers came or went."""
        state = self.topics.get(topic)
        if state is None:
            return
        for entry in leaves.values():
            for meta in entry["metas"]:
                self._presence_change(topic, state, meta["phx_ref"], None)
        for username, entry in joins.items():
            for meta in entry["metas"]:
                self._presence_change(topic, state, meta["phx_ref"], (username, meta))

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
