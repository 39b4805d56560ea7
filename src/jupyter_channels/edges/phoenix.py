"""Phoenix clients: the V2 JSON serializer, chosen per connection by ``?vsn=2.0.0``.

A thin layer between a WebSocket and the hub, as Phoenix's own serializers are:
every V2 frame in becomes a native frame for ``Hub.receive``, every native frame
out becomes a V2 frame. Joins, hooks, permissions, limits, history and presence
are the hub's. The mapping is described in ``docs/phoenix.md``.

Incoming: ``[join_ref, ref, topic, event, payload]``. ``phx_join`` is a join
(``since``, ``history``, ``presence`` and ``meta`` are taken out of its params,
the rest is the channel's join payload), ``phx_leave`` a leave, ``heartbeat`` on
topic ``phoenix`` a heartbeat, any other event a message whose subject is the
event. A frame that is not a JSON array of at least five elements closes the
connection (1011), as Phoenix's socket does; one with fields of the wrong types
is answered with a ``phx_reply`` error.

Outgoing: replies become ``phx_reply`` (with the frame's ``join_ref``), messages
``[null, null, topic, subject, payload]``, ``close`` ``phx_close``. A broadcast
is translated once for all Phoenix connections (:data:`frame_cache`), not once
per connection. The native ``ping`` text frame is not sent: Phoenix clients
send their own heartbeat.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..connection import Client
from ..constants import PING_TEXT, ErrorCode, Event, Status
from ..protocol import JSON, Ref, WsFrame, dumps, ws_text_frame

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger(__name__)

#: The ``vsn`` query argument that selects the V2 serializer.
VSN = "2.0.0"
#: The topic of the socket's own frames (heartbeats).
SOCKET_TOPIC = "phoenix"
#: Phoenix's socket ends on a frame it cannot decode; cowboy then closes with 1011.
FORMAT_ERROR_CLOSE = 1011
#: The key of a broadcast payload that carries offset, ts and from (join param ``meta``).
META_KEY = "_meta"


class PhxEvent(str, enum.Enum):
    """Phoenix's reserved event names."""

    JOIN = "phx_join"
    LEAVE = "phx_leave"
    REPLY = "phx_reply"
    CLOSE = "phx_close"
    ERROR = "phx_error"
    HEARTBEAT = "heartbeat"


#: Events a Phoenix client reads as the protocol's own: a message with one of these
#: subjects (sent by a native client) is not delivered to Phoenix connections, and a
#: Phoenix client cannot push one.
RESERVED_EVENTS = frozenset(
    {e.value for e in PhxEvent if e is not PhxEvent.HEARTBEAT}
    | {Event.PRESENCE_STATE.value, Event.PRESENCE_DIFF.value}
)
#: ``phx_join`` params that are the server's, not the channel's: the native join's
#: fields, and ``meta`` (this edge's own).
NATIVE_JOIN_OPTIONS = ("since", "history", "presence")
JOIN_OPTIONS = (*NATIVE_JOIN_OPTIONS, "meta")


class FormatError(Exception):
    """A frame that cannot be decoded as V2: the connection is closed."""


class Refusal(Exception):
    """A V2 frame with fields of the wrong types: answered with a ``phx_reply`` error."""

    def __init__(self, join_ref: Ref | None, ref: Ref | None, topic: str | None, detail: str):
        super().__init__(detail)
        self.join_ref = join_ref
        self.ref = ref
        self.topic = topic
        self.detail = detail


class Kind(str, enum.Enum):
    """What a V2 frame was, carried in the native ``ref`` so its reply can be shaped."""

    JOIN = "j"
    LEAVE = "l"
    HEARTBEAT = "h"
    PUSH = "p"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A V2 frame as a native frame, and the join's ``meta`` option (``None``: no join)."""

    native: str
    topic: str | None = None
    meta: bool | None = None


def _sendable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _echoable_ref(value: object) -> Ref | None:
    if isinstance(value, str) and _sendable(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _native_ref(join_ref: Ref | None, ref: Ref | None, kind: Kind) -> str:
    """The native ``ref`` of a V2 frame: its refs and kind, read back from the reply."""
    return dumps([join_ref, ref, kind.value])


def decode(text: str) -> Incoming:
    """One V2 text frame as a native frame.

    Raises :class:`FormatError` (close the connection) or :class:`Refusal` (answer it).
    """
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError("frame is not JSON") from None
    if not isinstance(frame, list) or len(frame) < 5:
        raise FormatError("frame is not an array [join_ref, ref, topic, event, payload]")
    raw_join_ref, raw_ref, raw_topic, event, payload = frame[:5]
    join_ref, ref = _echoable_ref(raw_join_ref), _echoable_ref(raw_ref)
    topic = raw_topic if isinstance(raw_topic, str) and _sendable(raw_topic) else None
    if (join_ref is None and raw_join_ref is not None) or (ref is None and raw_ref is not None):
        raise Refusal(join_ref, ref, topic, "join_ref and ref must be strings or null")
    if topic is None:
        raise Refusal(join_ref, ref, None, "topic must be a string")
    if not isinstance(event, str):
        raise Refusal(join_ref, ref, topic, "event must be a string")

    native: dict[str, JSON]
    meta: bool | None = None
    if event == PhxEvent.HEARTBEAT and topic == SOCKET_TOPIC:
        native = {"event": Event.HEARTBEAT.value, "ref": _native_ref(join_ref, ref, Kind.HEARTBEAT)}
    elif event == PhxEvent.JOIN:
        if not isinstance(payload, dict):
            raise Refusal(join_ref, ref, topic, "phx_join params must be an object")
        params = {k: v for k, v in payload.items() if k not in JOIN_OPTIONS}
        native = {
            "event": Event.JOIN.value,
            "topic": topic,
            "ref": _native_ref(join_ref, ref, Kind.JOIN),
            "payload": params,
        }
        native.update({k: payload[k] for k in NATIVE_JOIN_OPTIONS if k in payload})
        meta = payload.get("meta", False)
        if not isinstance(meta, bool):
            raise Refusal(join_ref, ref, topic, "'meta' must be true or false")
    elif event == PhxEvent.LEAVE:
        native = {
            "event": Event.LEAVE.value,
            "topic": topic,
            "ref": _native_ref(join_ref, ref, Kind.LEAVE),
        }
    elif event in RESERVED_EVENTS:
        raise Refusal(join_ref, ref, topic, f"{event!r} is a reserved event")
    else:
        native = {
            "event": Event.MESSAGE.value,
            "topic": topic,
            "subject": event,
            "payload": payload,
            "ref": _native_ref(join_ref, ref, Kind.PUSH),
        }
    try:
        native_text = dumps(native)
    except (ValueError, RecursionError):
        raise Refusal(
            join_ref, ref, topic, "payload is not JSON (NaN, Infinity or too deep)"
        ) from None
    if not _sendable(native_text):
        raise Refusal(
            join_ref,
            ref,
            topic,
            "frame holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot carry",
        )
    return Incoming(native_text, topic, meta)


def decode_binary(data: bytes) -> tuple[Ref | None, Ref | None, str | None, str]:
    """The header of a V2 binary push (``join_ref``, ``ref``, ``topic``, ``event``), which is
    answered with an error; raises :class:`FormatError` when it is no binary push."""
    if len(data) < 5 or data[0] != 0:
        raise FormatError("binary frame is not a push")
    sizes = data[1:5]
    end = 5 + sum(sizes)
    if len(data) < end:
        raise FormatError("binary push is shorter than its header says")
    fields: list[str] = []
    at = 5
    for size in sizes:
        try:
            fields.append(data[at : at + size].decode())
        except UnicodeDecodeError:
            raise FormatError("binary push header is not UTF-8") from None
        at += size
    join_ref, ref, topic, event = fields
    return join_ref or None, ref or None, topic, event


# -- outgoing ----------------------------------------------------------------------------------


def encode(
    join_ref: Ref | None, ref: Ref | None, topic: str | None, event: str, payload: JSON
) -> str:
    """One V2 frame: ``[join_ref, ref, topic, event, payload]``."""
    return dumps([join_ref, ref, topic, event, payload])


def frame_text(frame: WsFrame) -> str:
    """The text of a server frame built by ``protocol.ws_text_frame``/``ws_text_frame_of``."""
    data = b"".join(frame.chunks)
    length = data[1] & 0x7F
    header = 2 if length < 126 else 4 if length == 126 else 10
    return data[header:].decode()


class Native:
    """A native frame read once, and its V2 translations once built: shared by every
    Phoenix connection it is sent to."""

    __slots__ = ("frame", "obj", "plain", "with_meta")

    def __init__(self, frame: WsFrame | None, obj: dict[str, Any]) -> None:
        self.frame = frame  # held, so that its id is not reused while cached
        self.obj = obj
        self.plain: WsFrame | None = None
        self.with_meta: WsFrame | None = None

    def message(self, meta: bool) -> WsFrame | None:
        """The V2 broadcast of a ``message`` frame; ``None`` for a reserved subject."""
        obj = self.obj
        subject = obj.get("subject")
        if not isinstance(subject, str) or subject in RESERVED_EVENTS:
            return None
        payload = obj.get("payload")
        if meta and isinstance(payload, dict):
            if self.with_meta is None:
                stamped = {
                    **payload,
                    META_KEY: {
                        "offset": obj.get("offset"),
                        "ts": obj.get("ts"),
                        "from": obj.get("from"),
                    },
                }
                self.with_meta = ws_text_frame(
                    encode(None, None, obj.get("topic"), subject, stamped)
                )
            return self.with_meta
        if self.plain is None:
            self.plain = ws_text_frame(encode(None, None, obj.get("topic"), subject, payload))
        return self.plain

    def event(self) -> WsFrame:
        """The V2 frame of a ``presence_state`` or ``presence_diff``."""
        if self.plain is None:
            obj = self.obj
            self.plain = ws_text_frame(
                encode(None, None, obj.get("topic"), obj["event"], obj.get("payload"))
            )
        return self.plain


class FrameCache:
    """Native frames read in this turn of the event loop, by identity.

    The hub queues the same frame object on every subscriber of a broadcast in one
    turn, so one entry serves them all; the cache is emptied at the end of the turn,
    so it never holds a frame longer than the fan-out does.
    """

    def __init__(self) -> None:
        self._entries: dict[int, Native] = {}
        #: Native frames read (for benchmarks and tests): one per broadcast, whatever the
        #: number of Phoenix subscribers.
        self.translated = 0

    def get(self, frame: WsFrame) -> Native:
        entry = self._entries.get(id(frame))
        if entry is not None and entry.frame is frame:
            return entry
        entry = Native(frame, json.loads(frame_text(frame)))
        self.translated += 1
        if not self._entries:
            asyncio.get_running_loop().call_soon(self._entries.clear)
        self._entries[id(frame)] = entry
        return entry


#: The cache every Phoenix connection of this process reads broadcasts through.
frame_cache = FrameCache()

_PING_CHUNK = ws_text_frame(PING_TEXT).chunks[0]


class PhoenixClient(Client):
    """A connection speaking V2: the hub's frames are translated on their way out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The ``join_ref`` of each joined topic (Phoenix clients drop lifecycle
        #: frames, ``phx_close`` included, whose ``join_ref`` is not their join's).
        self.join_refs: dict[str, Ref | None] = {}
        #: Topics joined with ``meta``: their broadcasts carry ``_meta``.
        self.meta_topics: set[str] = set()

    def send(self, frame: WsFrame) -> None:
        if self.closed or frame.chunks[0] == _PING_CHUNK:
            return  # the ping text: Phoenix clients could not decode it (they send heartbeats)
        for out in self._translate(frame_cache.get(frame)):
            super().send(out)

    def send_text(self, text: str) -> None:
        if self.closed:
            return
        for out in self._translate(Native(None, json.loads(text))):
            super().send(out)

    def send_v2(self, text: str) -> None:
        super().send(ws_text_frame(text))

    def _translate(self, native: Native) -> list[WsFrame]:
        obj = native.obj
        event = obj.get("event")
        topic = obj.get("topic")
        if event == Event.MESSAGE:
            out = native.message(topic in self.meta_topics)
            return [] if out is None else [out]
        if event in (Event.PRESENCE_STATE, Event.PRESENCE_DIFF):
            return [native.event()]
        if event == Event.REPLY:
            return self._reply(obj)
        if event == Event.CLOSE and isinstance(topic, str):
            join_ref = self.join_refs.pop(topic, None)
            self.meta_topics.discard(topic)
            return [
                ws_text_frame(
                    encode(join_ref, join_ref, topic, PhxEvent.CLOSE.value, obj.get("payload", {}))
                )
            ]
        if event == Event.ERROR:
            return [
                ws_text_frame(
                    encode(None, None, SOCKET_TOPIC, PhxEvent.ERROR.value, obj.get("payload", {}))
                )
            ]
        log.debug("%r: no V2 form for a %r frame", self, event)
        return []

    def _reply(self, obj: dict[str, Any]) -> list[WsFrame]:
        try:
            join_ref, ref, kind = json.loads(obj["ref"])
        except (TypeError, ValueError, KeyError):
            join_ref, ref, kind = None, obj.get("ref"), None
        topic = obj.get("topic")
        payload = obj.get("payload", {})
        ok = payload.get("status") == Status.OK
        frames: list[str] = []
        if kind == Kind.HEARTBEAT:
            topic = SOCKET_TOPIC
        elif kind == Kind.JOIN and ok and topic is not None:
            self.join_refs[topic] = join_ref
        elif kind == Kind.LEAVE:
            reason = payload.get("response", {}).get("reason")
            if ok or reason == ErrorCode.NOT_JOINED:
                # Phoenix answers every leave with ok, then closes the channel if it was joined.
                payload = {"status": Status.OK.value, "response": {}}
                if ok and topic is not None:
                    self.join_refs.pop(topic, None)
                    self.meta_topics.discard(topic)
                    frames.append(encode(join_ref, join_ref, topic, PhxEvent.CLOSE.value, {}))
        frames.insert(0, encode(join_ref, ref, topic, PhxEvent.REPLY.value, payload))
        return [ws_text_frame(text) for text in frames]

    def refuse(self, refusal: Refusal, code: ErrorCode = ErrorCode.INVALID_MESSAGE) -> None:
        """Answer a frame the hub never sees (counted by the rate limit like any frame)."""
        self.last_seen = time.monotonic()
        detail = refusal.detail
        if not self.rate_limiter.take():
            code, detail = ErrorCode.RATE_LIMITED, "rate limit exceeded"
        payload = {
            "status": Status.ERROR.value,
            "response": {"reason": code.value, "detail": detail},
        }
        self.send_v2(
            encode(refusal.join_ref, refusal.ref, refusal.topic, PhxEvent.REPLY.value, payload)
        )


async def receive(hub: Hub, client: PhoenixClient, message: str | bytes) -> None:
    """Handle one frame of a V2 connection; the handler awaits it before reading the next."""
    try:
        if isinstance(message, bytes):
            join_ref, ref, topic, event = decode_binary(message)
            client.refuse(
                Refusal(join_ref, ref, topic, f"binary payloads are not supported ({event!r})")
            )
            return
        incoming = decode(message)
    except FormatError as e:
        log.info("closing %r: %s", client, e)
        client.close(FORMAT_ERROR_CLOSE, "invalid frame")
        return
    except Refusal as refusal:
        client.refuse(refusal)
        return
    if incoming.meta is not None and incoming.topic is not None:
        if incoming.meta:
            client.meta_topics.add(incoming.topic)
        else:
            client.meta_topics.discard(incoming.topic)
    await hub.receive(client, incoming.native)
