"""The native wire format: decoding, validation and encoding, without I/O.

Every function here is pure; the hub (``hub/``) decides what to do with a
decoded frame and the Tornado handler (``handlers.py``) moves the bytes.
The protocol is described, with an example frame per event, in
``docs/protocol.md``.
"""

from __future__ import annotations

import json
import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from .constants import (
    CLIENT_EVENTS,
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    TOPIC_RE,
    ErrorCode,
    Event,
    Status,
)

Ref = str | int
JSON = Any

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _finite(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} is out of range")
    return value


# Strict JSON: NaN, Infinity and numbers that overflow to infinity are refused here,
# since ``dumps`` could never send them on.
_decoder = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)

#: How deeply a client frame may nest. Python's encoder recurses, so a frame the
#: decoder just managed to read could not be encoded again (stored, broadcast).
MAX_DEPTH = 100

#: A ``\uD800``-``\uDFFF`` escape: how a lone surrogate, which UTF-8 cannot carry,
#: gets into a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def dumps(value: JSON) -> str:
    """Encode ``value`` compactly; raises ``ValueError``/``TypeError`` if it is not JSON."""
    return _encoder.encode(value)


class ProtocolError(Exception):
    """A frame that breaks the protocol; becomes an error reply or an ``error`` frame."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        ref: Ref | None = None,
        topic: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref
        self.topic = topic


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded, validated client frame."""

    event: Event
    ref: Ref | None = None
    topic: str | None = None
    subject: str | None = None
    payload: JSON = field(default_factory=dict)
    since: int | None = None
    history: int = 0
    #: ``join``: whether this connection wants ``presence_state``/``presence_diff`` frames.
    presence: bool = True
    before: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    #: ``message``: fanned out to the topic's current subscribers, never stored.
    ephemeral: bool = False


def is_topic(value: object) -> bool:
    """Whether ``value`` is a valid topic name (1-255 chars of ``[A-Za-z0-9_.:@/+-]``)."""
    return isinstance(value, str) and TOPIC_RE.match(value) is not None


def _utf8(text: str) -> bool:
    """Whether ``text`` can be sent in a text frame (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _deeper_than(obj: JSON, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _unsendable(text: str, obj: dict[str, Any]) -> str | None:
    """Why a decoded frame could not be encoded again, if it could not."""
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        return f"frame is nested more than {MAX_DEPTH} deep"
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _utf8(dumps(obj)):
        return "frame holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot carry"
    return None


def read_ref(obj: dict[str, Any]) -> Ref | None:
    """The frame's ``ref`` if it is readable (an integer, or a string without a lone
    surrogate, so that it can be echoed), else ``None``."""
    ref = obj.get("ref")
    if (isinstance(ref, str) and _utf8(ref)) or (
        isinstance(ref, int) and not isinstance(ref, bool)
    ):
        return ref
    return None


def peek(text: str) -> tuple[Ref | None, str | None]:
    """The ``ref`` and ``topic`` to echo for a frame that is refused before decoding
    (too large): each ``None`` unless the frame is a JSON object carrying a readable one."""
    try:
        obj = _decoder.decode(text)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    return read_ref(obj), _echoable(obj.get("topic"))


def _echoable(topic: object) -> str | None:
    """``topic`` if a reply may echo it (a string of at most 255 characters UTF-8 can carry)."""
    if isinstance(topic, str) and len(topic) <= 255 and _utf8(topic):
        return topic
    return None


def _count(obj: dict[str, Any], key: str, ref: Ref | None, topic: str | None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"{key!r} must be a non-negative integer",
            ref=ref,
            topic=topic,
        )
    return value


def load_body(text: str | bytes) -> JSON:
    """Parse a REST request body by the same rules as a frame; raises :class:`ProtocolError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "body is not UTF-8") from None
    try:
        obj = _decoder.decode(text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "body is not JSON") from None
    problem = _unsendable(text, obj) if isinstance(obj, dict) else None
    if problem is not None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, problem)
    return obj


def decode(text: str) -> Frame:
    """Decode and validate one client text frame.

    Raises :class:`ProtocolError` with the code to answer; its ``ref`` is set
    when the frame's ``ref`` could be read (then the answer is an error reply,
    otherwise an ``error`` frame).
    """
    try:
        obj = _decoder.decode(text)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "frame is not JSON") from None
    except RecursionError:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"frame is nested more than {MAX_DEPTH} deep"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "frame is not a JSON object")
    ref = read_ref(obj)
    raw_topic = obj.get("topic")
    echo_topic = _echoable(raw_topic)
    problem = _unsendable(text, obj)
    if problem is not None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, problem, ref=ref, topic=echo_topic)
    event_name = obj.get("event")
    try:
        event = Event(event_name)
    except ValueError:
        event = None
    if event is None or event not in CLIENT_EVENTS:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"unknown event {event_name!r}" if isinstance(event_name, str) else "missing 'event'",
            ref=ref,
            topic=echo_topic,
        )
    if event is Event.HEARTBEAT:
        return Frame(event=event, ref=ref)

    if not is_topic(raw_topic):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            "'topic' must be 1-255 characters of A-Z a-z 0-9 _ . : @ / + -",
            ref=ref,
            topic=echo_topic,
        )
    topic = str(raw_topic)
    payload = obj.get("payload")

    if event is Event.JOIN:
        if payload is None:
            payload = {}
        elif not isinstance(payload, dict):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "join 'payload' must be an object", ref=ref, topic=topic
            )
        history = _count(obj, "history", ref, topic) or 0
        presence = obj.get("presence", True)
        if not isinstance(presence, bool):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "'presence' must be true or false", ref=ref, topic=topic
            )
        return Frame(
            event=event,
            ref=ref,
            topic=topic,
            payload=payload,
            since=_count(obj, "since", ref, topic),
            history=min(history, MAX_HISTORY_LIMIT),
            presence=presence,
        )
    if event is Event.MESSAGE:
        subject = obj.get("subject")
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                "'subject' must be a string of 1-255 characters",
                ref=ref,
                topic=topic,
            )
        ephemeral = obj.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "'ephemeral' must be true or false", ref=ref, topic=topic
            )
        return Frame(
            event=event,
            ref=ref,
            topic=topic,
            subject=subject,
            payload={} if "payload" not in obj else payload,
            ephemeral=ephemeral,
        )
    if event is Event.HISTORY:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                "history 'payload' must be an object",
                ref=ref,
                topic=topic,
            )
        limit = _count(payload, "limit", ref, topic)
        return Frame(
            event=event,
            ref=ref,
            topic=topic,
            payload=payload,
            before=_count(payload, "before", ref, topic),
            limit=DEFAULT_HISTORY_LIMIT if limit is None else min(limit, MAX_HISTORY_LIMIT),
        )
    return Frame(event=event, ref=ref, topic=topic)  # leave


# -- encoding -----------------------------------------------------------------


def reply_head(topic: str | None, ref: Ref, status: Status) -> str:
    """A ``reply`` frame up to its ``response``; :data:`REPLY_TAIL` closes it."""
    head = '{"event":"reply",'
    if topic is not None:
        head += f'"topic":{dumps(topic)},'
    return f'{head}"ref":{dumps(ref)},"payload":{{"status":"{status.value}","response":'


REPLY_TAIL = "}}"


def encode_reply(topic: str | None, ref: Ref, response_json: str, status: Status) -> str:
    """A ``reply`` frame around an already encoded ``response``."""
    return reply_head(topic, ref, status) + response_json + REPLY_TAIL


def ok_reply(topic: str | None, ref: Ref, response: JSON = None) -> str:
    return encode_reply(topic, ref, dumps({} if response is None else response), Status.OK)


def error_reply(topic: str | None, ref: Ref, code: ErrorCode, detail: str) -> str:
    return encode_reply(topic, ref, dumps({"reason": code.value, "detail": detail}), Status.ERROR)


def error_frame(code: ErrorCode, detail: str, ref: Ref | None = None) -> str:
    """An ``error`` frame: for frames whose ``ref`` cannot be read."""
    frame: dict[str, JSON] = {
        "event": Event.ERROR.value,
        "payload": {"reason": code.value, "detail": detail},
    }
    if ref is not None:
        frame["ref"] = ref
    return dumps(frame)


def encode_message(
    topic: str,
    subject: str,
    payload_json: str,
    offset: int | None,
    ts: int,
    sender_json: str,
    *,
    ephemeral: bool = False,
) -> str:
    """A ``message`` frame; ``payload_json`` and ``sender_json`` are already encoded.
    An ephemeral one (never stored) has ``"offset": null`` and ``"ephemeral": true``."""
    offset_json = "null" if offset is None or ephemeral else str(offset)
    marker = ',"ephemeral":true' if ephemeral else ""
    return (
        f'{{"event":"message","topic":{dumps(topic)},"subject":{dumps(subject)},'
        f'"payload":{payload_json},"offset":{offset_json}{marker},'
        f'"ts":{ts},"from":{sender_json}}}'
    )


def message_frame_parts(
    topic: str, subject: str, payload_json: str, sender_json: str
) -> tuple[str, str]:
    """A ``message`` frame split around its offset and ts, for stores that number
    messages elsewhere (Redis): ``head + f'{offset},"ts":{ts}' + tail`` is
    :func:`encode_message`'s frame."""
    return (
        f'{{"event":"message","topic":{dumps(topic)},"subject":{dumps(subject)},'
        f'"payload":{payload_json},"offset":',
        f',"from":{sender_json}}}',
    )


def encode_event(event: Event, topic: str, payload: JSON) -> str:
    """A ``presence_state``, ``presence_diff`` or ``close`` frame."""
    return f'{{"event":"{event.value}","topic":{dumps(topic)},"payload":{dumps(payload)}}}'


# -- WebSocket framing ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WsFrame:
    """The bytes of one server frame: a single chunk, or a header and a large payload
    kept apart so the payload is never copied."""

    chunks: tuple[bytes, ...]
    size: int


def ws_text_frame(text: str) -> WsFrame:
    """One unmasked, uncompressed, final WebSocket text frame.

    A server frame is the same for every receiver, so a broadcast is framed
    once and the same bytes are queued on every subscriber's stream.
    """
    data = text.encode()
    n = len(data)
    header = _text_header(n)
    size = len(header) + n
    if n >= OFF_HEAP_FROM:
        return WsFrame((header, _off_heap(data)), size)
    return WsFrame((header + data,), size)


def ws_text_frame_of(parts: list[bytes]) -> WsFrame:
    """One text frame whose payload is ``parts`` (UTF-8) one after the other, never joined:
    a reply of stored messages is queued as the very bytes the store read."""
    n = sum(len(part) for part in parts)
    header = _text_header(n)
    return WsFrame((header, *parts), len(header) + n)


def _text_header(n: int) -> bytes:
    if n < 126:
        return struct.pack("!BB", 0x81, n)
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n)
    return struct.pack("!BBQ", 0x81, 127, n)


#: Payloads at least this big are kept in their own memory mapping while queued.
OFF_HEAP_FROM = 64 * 1024


def _off_heap(data: bytes) -> bytes:
    """A copy of ``data`` in an anonymous memory mapping, unmapped when the last reference goes.

    A large frame queued on a slow subscriber may live for a while; on the
    malloc heap it would pin the space around it, and the server's memory
    would grow by far more than the bytes queued. In its own mapping it costs
    exactly its pages and is returned to the system when written.
    """
    buffer = mmap.mmap(-1, len(data))
    buffer.write(data)
    return memoryview(buffer)  # type: ignore[return-value]
