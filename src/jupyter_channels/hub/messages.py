"""Messages: running ``handle_message``, publishing, and fan-out to subscribers.

A broadcast is encoded and framed once; the same bytes are queued on every
subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from typing import Any, cast

from ..channel import Channel, Reject
from ..connection import Client
from ..constants import MAX_IN_FLIGHT, ErrorCode
from ..history.base import Draft, StoredMessage, StoreUnavailable
from ..message import Message
from ..protocol import JSON, Frame, dumps, encode_message, ok_reply, ws_text_frame
from .base import HookContext, HookError, current_hook, sender_json
from .moderation import Moderation
from .permissions import Action

log = logging.getLogger(__name__)

_Published = asyncio.Future[StoredMessage | None]


class Published:
    """What ``broadcast`` and friends return: awaiting it gives the message's offset
    (``None`` for an ephemeral message, which has none)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[StoredMessage | None]) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, int | None]:
        message = yield from self.future.__await__()
        return None if message is None else message.offset


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("publish failed: %s", future.exception())


class Messages(Moderation):
    """``message`` frames in, stored messages out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broker.deliver_ephemeral = self._deliver_ephemeral

    async def _message(self, client: Client, frame: Frame) -> None:
        topic = frame.topic
        assert topic is not None
        sub = self._joined(client, frame)
        if sub is None:
            return
        if not client.can_write:
            self._fail(
                client,
                ErrorCode.UNAUTHORIZED,
                "not authorized to write to channels",
                frame.ref,
                topic,
            )
            return
        channel = self._channel(client, frame)
        if channel is None:
            return
        message = Message(topic, frame.subject, frame.payload, frame.ref, ephemeral=frame.ephemeral)
        task = self._spawn(self._run_message(channel, client, message))
        client.in_flight.add(task)
        task.add_done_callback(client.in_flight.discard)
        if len(client.in_flight) >= MAX_IN_FLIGHT:
            # Stop reading this socket until one finishes: a fast sender is
            # slowed by TCP instead of growing the server's memory.
            await asyncio.wait(client.in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def _run_message(self, channel: Channel, client: Client, message: Message) -> None:
        try:
            response = await self.handle_message(channel, client, message)
        except HookError as e:
            self._fail(client, e.code, e.detail, message.ref, message.topic)
            return
        if message.ref is not None:
            client.send_text(ok_reply(message.topic, message.ref, response))

    async def handle_message(
        self, channel: Channel, client: Client, message: Message
    ) -> dict[str, JSON]:
        """Run ``handle_message`` and wait until what it published is stored.

        Returns the ok reply's ``response``; raises :class:`HookError`, ``unauthorized``
        before the hook runs when the topic's permissions do not let the client send or
        it is muted, and for ``edit``, ``delete`` and ``mute`` as ``moderation.py`` says.
        Ephemeral messages go through the same checks and the same hook.
        """
        refusal = self.permissions.refusal(client.user, Action.SEND, message.topic)
        if refusal is not None:
            raise HookError(ErrorCode.UNAUTHORIZED, refusal)
        message, mute = await self.moderate(client.user, message)
        context = HookContext(client, message.topic)
        try:
            result = await self._hook(
                channel.handle_message, client, message.topic, message, context=context
            )
        except Reject as e:
            raise HookError(ErrorCode.UNAUTHORIZED, e.detail) from None
        response: dict[str, JSON] = {}
        if context.published:
            try:
                published = await asyncio.gather(*context.published)
            except StoreUnavailable as e:
                raise HookError(e.code, str(e)) from None
            finally:
                context.published.clear()  # they hold whole messages; let them go now
            stored = [message for message in published if message is not None]
            if stored:
                response["offset"] = stored[-1].offset
        if mute is not None:
            await self.record(mute)
        if isinstance(result, dict):
            response.update(result)
        try:
            dumps(response)
        except (TypeError, ValueError) as e:
            log.error("%s.handle_message returned a value that is not JSON: %s", channel, e)
            raise HookError(ErrorCode.INTERNAL_ERROR, "the channel's reply is not JSON") from None
        return response

    def context_topic(self) -> str:
        context = current_hook.get()
        if context is None:
            raise RuntimeError("no topic: pass topic= when calling outside a channel hook")
        return context.topic

    # -- publishing and fan-out --------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        subject: str,
        payload: JSON,
        *,
        exclude: str | None = None,
        ephemeral: bool = False,
    ) -> Published:
        """Number, store and broadcast a message; ``from`` is the client whose hook is running.

        An ``ephemeral`` message is only sent to the topic's current subscribers (on every
        server): no offset, nothing stored.
        """
        context = current_hook.get()
        future: _Published
        if ephemeral:
            ts = int(time.time() * 1000)
            frame = encode_message(
                topic, subject, dumps(payload), None, ts, sender_json(context), ephemeral=True
            )
            # A Future is invariant in its type, but this one is only ever read.
            future = cast(_Published, self.broker.publish_ephemeral(topic, frame, exclude))
        else:
            draft = Draft(topic, subject, dumps(payload), sender_json(context), exclude)
            future = cast(_Published, self.broker.publish(draft))
        future.add_done_callback(_log_failure)
        if context is not None and context.active:
            context.published.append(future)
        return Published(future)

    def _deliver(self, message: StoredMessage) -> None:
        """Broker callback: send a stored message to this server's subscribers."""
        state = self.topics.get(message.topic)
        if state is None:
            return
        data = ws_text_frame(message.frame)
        offset = message.offset
        exclude = message.exclude
        for sub in state.subscribers.values():
            if sub.pending is not None:
                # A joiner's held messages go out without another look at ``exclude``.
                if sub.client.id != exclude:
                    sub.pending.append((offset, data))
            elif offset > sub.last_offset:
                sub.last_offset = offset
                if sub.client.id != exclude:
                    sub.client.send(data)

    def _deliver_ephemeral(self, topic: str, frame: str, exclude: str | None) -> None:
        """Broker callback: send an ephemeral frame to this server's joined subscribers
        (not to joiners still waiting for their join reply: it was never theirs to miss)."""
        state = self.topics.get(topic)
        if state is None:
            return
        data = ws_text_frame(frame)
        for sub in state.subscribers.values():
            if sub.pending is None and sub.client.id != exclude:
                sub.client.send(data)

    def push(self, client_id: str, topic: str, subject: str, payload: JSON) -> asyncio.Future[None]:
        """Send one ``message`` frame (offset ``null``) to one client."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        client = self.clients.get(client_id)
        if client is None:
            return future
        sender = sender_json(current_hook.get())
        ts = int(time.time() * 1000)
        client.send_text(encode_message(topic, subject, dumps(payload), None, ts, sender))
        return future
