"""Moderation: the messages the server itself checks before the channel sees them.

- ``edit`` (``{"offset", "text"}``) and ``delete`` (``{"offset"}``) refer to an
  earlier ``text`` message of the topic; they are accepted from that message's
  author (its ``from.user``) or a moderator, refused ``unauthorized`` from anyone
  else, and ``invalid_message`` when malformed or when no ``text`` message of the
  topic is retained at that offset.
- ``mute`` (``{"user", "seconds"}``, 0 lifts it) is accepted from moderators
  only; the server adds ``until`` (ms since the epoch) to the stored payload and,
  once the channel accepted it, records the mute in the history store, so it
  holds across servers sharing it and across restarts.
- A muted user's every ``message`` (ephemeral ones, edits and deletes too) is
  refused ``unauthorized`` until the mute ends.

Moderators are the ``moderate`` principals of the topic's permission rule; with
no rules configured nobody moderates (authors still edit and delete their own).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import datetime, timezone

from ..connection import Identity
from ..constants import ErrorCode, Subject
from ..history.base import StoreUnavailable
from ..message import Message
from ..protocol import JSON
from .base import HookError, HubBase
from .permissions import Action

#: The subjects checked here.
CHECKED = frozenset({Subject.EDIT.value, Subject.DELETE.value, Subject.MUTE.value})
#: The longest mute, in seconds (a year): beyond it ``seconds`` is a mistake.
MAX_MUTE_SECONDS = 365 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Mute:
    """A mute to record once the channel accepted its message; ``until`` ``None`` lifts it."""

    topic: str
    username: str
    until: int | None


def _invalid(detail: str) -> HookError:
    return HookError(ErrorCode.INVALID_MESSAGE, detail)


def _offset(subject: str, payload: JSON) -> int:
    """The offset an ``edit`` or ``delete`` refers to; raises ``invalid_message``."""
    shape = '{"offset": n, "text": "..."}' if subject == Subject.EDIT.value else '{"offset": n}'
    if not isinstance(payload, dict):
        raise _invalid(f"a {subject} payload is {shape}")
    offset = payload.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
        raise _invalid(f"a {subject} payload is {shape}: 'offset' must be a positive integer")
    if subject == Subject.EDIT.value and not isinstance(payload.get("text"), str):
        raise _invalid(f"a {subject} payload is {shape}: 'text' must be a string")
    return offset


def _mute_payload(payload: JSON) -> tuple[str, float]:
    shape = '{"user": "name", "seconds": n}'
    if not isinstance(payload, dict):
        raise _invalid(f"a mute payload is {shape}")
    user, seconds = payload.get("user"), payload.get("seconds")
    if not isinstance(user, str) or not 0 < len(user) <= 255:
        raise _invalid(f"a mute payload is {shape}: 'user' must be a username")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_MUTE_SECONDS
    ):
        raise _invalid(
            f"a mute payload is {shape}: 'seconds' must be a number from 0 (lift the mute) "
            f"to {MAX_MUTE_SECONDS}"
        )
    return user, seconds


def when(ms: int) -> str:
    """``ms`` since the epoch as an ISO 8601 UTC time, for details people read."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Moderation(HubBase):
    """Checks ``edit``, ``delete`` and ``mute`` messages, and mutes (see the module docstring)."""

    def moderates(self, identity: Identity, topic: str) -> bool:
        """Whether ``identity`` is a moderator of ``topic`` (a ``moderate`` principal)."""
        if self.permissions.rules is None:
            return False
        return self.permissions.decide(identity, Action.MODERATE, topic).allowed

    def _not_moderator(self, identity: Identity, topic: str, what: str) -> HookError:
        if self.permissions.rules is None:
            why = "no permissions are configured, so nobody moderates"
        else:
            refusal = self.permissions.refusal(identity, Action.MODERATE, topic)
            why = refusal or "not a moderator"
        return HookError(ErrorCode.UNAUTHORIZED, f"{what} ({why})")

    async def moderate(self, identity: Identity, message: Message) -> tuple[Message, Mute | None]:
        """Check ``message`` before the channel's hook runs: raises :class:`HookError`
        (``unauthorized``, ``invalid_message``, ``unavailable``); returns the message the
        hook gets (a ``mute`` with its ``until``) and the mute to record after it."""
        try:
            return await self._moderate(identity, message)
        except StoreUnavailable as e:
            raise HookError(e.code, str(e)) from None

    async def _moderate(self, identity: Identity, message: Message) -> tuple[Message, Mute | None]:
        topic, username = message.topic, identity.username
        now = int(time.time() * 1000)
        until = await self.broker.muted_until(topic, username)
        if until is not None and until > now:
            raise HookError(ErrorCode.UNAUTHORIZED, f"muted in {topic!r} until {when(until)}")
        subject = message.subject
        if subject not in CHECKED:
            return message, None
        if message.ephemeral:
            raise _invalid(f"a {subject} message is stored: it cannot be ephemeral")
        if subject == Subject.MUTE.value:
            user, seconds = _mute_payload(message.payload)
            if not self.moderates(identity, topic):
                raise self._not_moderator(identity, topic, f"only moderators may mute in {topic!r}")
            ends = now + int(seconds * 1000) if seconds > 0 else None
            payload = {**message.payload, "until": ends}
            return dataclasses.replace(message, payload=payload), Mute(topic, user, ends)
        offset = _offset(subject or "", message.payload)
        target = await self.broker.message_at(topic, offset)
        frame = json.loads(target.frame) if target is not None else None
        if not isinstance(frame, dict) or frame.get("subject") != Subject.TEXT.value:
            raise _invalid(f"no text message at offset {offset} of {topic!r} to {subject}")
        sender = frame.get("from")
        author = sender.get("user") if isinstance(sender, dict) else None
        if author != username and not self.moderates(identity, topic):
            raise self._not_moderator(
                identity,
                topic,
                f"only its author ({author}) or a moderator may {subject} message {offset}",
            )
        return message, None

    async def record(self, mute: Mute) -> None:
        """Record a mute the channel accepted; raises :class:`HookError` (``unavailable``)."""
        try:
            await self.broker.mute(mute.topic, mute.username, mute.until)
        except StoreUnavailable as e:
            raise HookError(e.code, str(e)) from None
