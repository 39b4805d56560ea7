"""Random input: decode only ever refuses with ProtocolError; the server survives 10,000 frames."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.websocket import WebSocketClosedError

from jupyter_channels.constants import ErrorCode
from jupyter_channels.protocol import (
    Frame,
    ProtocolError,
    decode,
    dumps,
    error_frame,
    error_reply,
    is_topic,
    ok_reply,
    ws_text_frame,
)


@pytest.fixture
def channels_config() -> dict:
    """No rate limit: every fuzz frame must reach the decoder and the hub."""
    return {"rate_limit": 0}


# -- decode, property-based ---------------------------------------------------------------------

#: Any character, lone surrogates included (JSON escapes can carry them into a frame).
characters = st.characters(codec=None, exclude_categories=()) | st.sampled_from(
    ["\ud800", "\udfff", '"', "\\", "{", "[", ":", "\x00"]
)
texts = st.text(characters, max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as NaN/Infinity
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["event", "topic", "ref", "subject", "payload", "since", "history", "limit", "before"]
)
event_names = st.sampled_from(["join", "message", "leave", "history", "heartbeat", "reply"])
frame_like = st.fixed_dictionaries(
    {"event": event_names | json_values},
    optional={
        "topic": st.sampled_from(["chat:lobby", "a", "x" * 255, "x" * 256, ""]) | json_values,
        "ref": st.integers() | texts | json_values,
        "subject": texts | json_values,
        "payload": json_values
        | st.fixed_dictionaries({}, optional={"before": json_values, "limit": json_values}),
        "since": st.integers(min_value=-5, max_value=2**70) | json_values,
        "history": st.integers(min_value=-5, max_value=2**70) | json_values,
    },
) | st.dictionaries(field_names | texts, json_values, max_size=6)


def check_decode(text: str) -> None:
    """``decode`` gives a frame it can answer, or a ProtocolError it can answer."""
    try:
        frame = decode(text)
    except ProtocolError as e:
        error = e
    else:
        error = None
    if error is not None:
        assert isinstance(error.code, ErrorCode)
        if error.ref is None:
            ws_text_frame(error_frame(error.code, error.detail))
        else:
            ws_text_frame(error_reply(error.topic, error.ref, error.code, error.detail))
        return
    assert isinstance(frame, Frame)
    assert frame.topic is None or is_topic(frame.topic)
    ws_text_frame(ok_reply(frame.topic, frame.ref) if frame.ref is not None else "")
    ws_text_frame(dumps(frame.payload))
    if frame.subject is not None:
        ws_text_frame(dumps(frame.subject))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_decoding_arbitrary_text_gives_a_frame_or_a_protocol_error(text):
    check_decode(text)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_decoding_arbitrary_json_gives_a_frame_or_a_protocol_error(value):
    check_decode(json.dumps(value))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(frame_like, st.booleans())
def test_decoding_arbitrary_frame_shaped_objects_gives_a_frame_or_a_protocol_error(obj, ascii):
    check_decode(json.dumps(obj, ensure_ascii=ascii) if ascii else _dumps_raw(obj))


def _dumps_raw(obj: Any) -> str:
    """Non-ASCII characters as themselves, lone surrogates escaped (a WebSocket text frame
    is UTF-8, so only an escape can carry one)."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


# -- the server, under 10,000 random frames -----------------------------------------------------

SEED = 20_240_601
FRAMES = 10_000
#: A heartbeat is sent and its reply awaited every this many frames, so output cannot pile up.
PACE = 200
TOPICS = [f"fuzz:{i}" for i in range(12)] + ["a", "x" * 255, "user@host/room+1", "f.u_z-z:9"]


class FrameGenerator:
    """Deterministic random client frames: garbage, wrong types, and valid traffic."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def readable_ref(self) -> str | int:
        self.serial += 1
        return self.rng.choice(
            [f"r{self.serial}", 1_000_000 + self.serial, f"é{self.serial}", f"{self.serial}"]
        )

    def ref(self) -> Any:
        if self.rng.random() < 0.6:
            return self.readable_ref()
        return self.rng.choice([None, True, False, 1.5, [1], {"r": 1}, "\ud800"])

    def text(self) -> str:
        rng = self.rng
        pool = 'abc:/@+-_.é ☃\u200b"\\{}[]0\n\t' + "\U0001f600"
        return "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))

    def scalar(self) -> Any:
        rng = self.rng
        return rng.choice(
            [
                None,
                True,
                False,
                rng.randint(-(2**70), 2**70),
                rng.randint(-3, 30),
                rng.random() * 1000,
                math.nan,
                math.inf,
                self.text(),
                "\udc00x",
            ]
        )

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.random()
        if depth >= 3 or roll < 0.5:
            return self.scalar()
        if roll < 0.7:
            return [self.value(depth + 1) for _ in range(rng.randint(0, 3))]
        if roll < 0.98:
            return {self.text(): self.value(depth + 1) for _ in range(rng.randint(0, 3))}
        nested: Any = 1
        for _ in range(300):
            nested = [nested]
        return nested

    def topic(self) -> Any:
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice(TOPICS)
        return rng.choice(
            [
                "",
                "x" * 256,
                "a b",
                "café",
                "t\ud800",
                5,
                None,
                ["a"],
                "new:" + str(rng.randint(0, 200)),
            ]
        )

    def garbage(self) -> str:
        rng = self.rng
        return rng.choice(
            [
                self.text(),
                '{"event":',
                "[",
                "null",
                '""',
                "{}",
                "[" * 5000 + "]" * 5000,
                '{"event":"heartbeat","ref":"x"',
                '{"event":"message","topic":"a","subject":"s","ref":"nan","payload":NaN}',
                '{"event":"heartbeat","ref":"\\ud800"}',
                "ping",
                "\U0001f600" * rng.randint(1, 50),
            ]
        )

    def valid(self) -> dict[str, Any]:
        rng = self.rng
        topic = rng.choice(TOPICS)
        ref = self.readable_ref() if rng.random() < 0.8 else None
        kind = rng.choice(["join", "join", "message", "message", "message", "leave", "history"])
        frame: dict[str, Any] = {"event": kind, "topic": topic}
        if kind == "join":
            frame["payload"] = {"n": rng.randint(0, 9)}
            if rng.random() < 0.5:
                frame["since"] = rng.randint(0, 40)
            else:
                frame["history"] = rng.randint(0, 5)
        elif kind == "message":
            frame["subject"] = rng.choice(["text", "cell", "s" * 255])
            frame["payload"] = {"text": self.text(), "n": rng.randint(0, 10**6)}
        elif kind == "history":
            before = rng.choice([rng.randint(0, 50), 2**64])
            frame["payload"] = {"before": before, "limit": rng.randint(0, 20)}
        if ref is not None:
            frame["ref"] = ref
        return frame

    def random_object(self) -> dict[str, Any]:
        rng = self.rng
        frame: dict[str, Any] = {}
        if rng.random() < 0.9:
            frame["event"] = rng.choice(
                ["join", "message", "leave", "history", "heartbeat", "reply", "", "JOIN", 7]
            )
        for key in ["topic", "ref", "subject", "payload", "since", "history"]:
            if rng.random() < 0.6:
                frame[key] = self.ref() if key == "ref" else self.field(key)
        return frame

    def field(self, key: str) -> Any:
        if key == "topic":
            return self.topic()
        if key == "payload" and self.rng.random() < 0.3:
            return {"before": self.scalar(), "limit": self.scalar()}
        return self.value()

    def frame(self) -> str | bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:
            return self.garbage()
        if roll < 0.15:
            return json.dumps([self.value() for _ in range(rng.randint(0, 3))])
        if roll < 0.17:
            return b"\x00\xffbinary"
        obj = self.valid() if roll < 0.6 else self.random_object()
        return json.dumps(obj, allow_nan=True)


def readable_ref_key(text: str | bytes) -> str | None:
    """What the server must echo in a reply: the ``ref`` of a frame that is a JSON object
    (strict JSON: no NaN or infinities) when it is an integer or a string UTF-8 can carry
    (no lone surrogate)."""
    if isinstance(text, bytes):
        return None

    def not_json(token: str) -> Any:
        raise ValueError(token)

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(token)
        return value

    try:
        obj = json.loads(text, parse_constant=not_json, parse_float=finite)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    ref = obj.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        return None
    if isinstance(ref, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in ref):
        return None
    return json.dumps(ref)


class ErrorLog(logging.Handler):
    """Records every log record at ERROR or above, and every traceback logged at any level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if (
            record.levelno >= logging.ERROR
            or record.exc_info
            or "Traceback" in text
            or "never retrieved" in text
        ):
            self.records.append(f"{record.name} {record.levelname}: {self.format(record)}")


@contextlib.contextmanager
def recording_errors(*loggers: logging.Logger) -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: handler.records.append(f"loop exception: {context}")
    )
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        loop.set_exception_handler(previous)


class Reader:
    """Reads every server frame in the background, counting replies by ``ref``."""

    def __init__(self, conn: Any, errors: ErrorLog) -> None:
        self.conn = conn
        self.errors = errors
        self.replies: collections.Counter[str] = collections.Counter()
        self.statuses: dict[str, str] = {}
        self.error_frames = 0
        #: ``error`` frames carrying a ``ref``: those should have been error replies.
        self.error_frames_with_ref: list[dict[str, Any]] = []
        self.events: collections.Counter[str] = collections.Counter()
        self.arrived = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                self.arrived.set()
                return
            if raw == "ping":
                continue
            frame = json.loads(raw)
            self.events[frame["event"]] += 1
            if frame["event"] == "reply":
                key = json.dumps(frame["ref"])
                self.replies[key] += 1
                self.statuses[key] = frame["payload"]["status"]
                self.arrived.set()
            elif frame["event"] == "error":
                self.error_frames += 1
                if "ref" in frame:
                    self.error_frames_with_ref.append(frame)

    async def wait_for(self, keys: set[str], timeout: float = 30) -> None:
        async def replied() -> None:
            while not keys <= self.replies.keys():
                if self.task.done():
                    self.task.result()  # the reader's own failure, if it had one
                    raise AssertionError(
                        f"the server closed the connection ({self.conn.close_code} "
                        f"{self.conn.close_reason}); logged: {self.errors.records[:3]}"
                    )
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(replied(), timeout)


async def test_ten_thousand_random_frames_leave_the_connection_open_and_every_ref_answered(
    channels_ws, jp_serverapp
):
    generator = FrameGenerator(SEED)
    expected: set[str] = set()
    pace_refs: set[str] = set()
    with recording_errors(logging.getLogger(), jp_serverapp.log) as errors:
        client = await channels_ws()
        reader = Reader(client.conn, errors)
        for i in range(1, FRAMES + 1):
            frame = generator.frame()
            key = readable_ref_key(frame)
            if key is not None:
                assert key not in expected, f"the generator repeated ref {key}"
                expected.add(key)
            try:
                await client.conn.write_message(frame, binary=isinstance(frame, bytes))
            except WebSocketClosedError:
                pytest.fail(
                    f"the server closed the connection ({client.conn.close_code} "
                    f"{client.conn.close_reason}) before frame {i}; logged: {errors.records[:3]}"
                )
            if i % PACE == 0 or i == FRAMES:
                pace = json.dumps(f"pace-{i}")
                pace_refs.add(pace)
                await client.send({"event": "heartbeat", "ref": f"pace-{i}"})
                await reader.wait_for({pace})

        await reader.wait_for(expected)
        last = json.dumps("last")
        await client.send({"event": "heartbeat", "ref": "last"})
        await reader.wait_for({last})
        client.close()
        await asyncio.wait_for(reader.task, 10)

        fresh = await channels_ws()
        await fresh.join("after:fuzz")
        assert await fresh.publish("after:fuzz") == 1
        fresh.close()
        gc.collect()
        await asyncio.sleep(0)

    assert reader.statuses[last] == "ok"
    assert all(reader.statuses[key] == "ok" for key in pace_refs)
    assert set(reader.replies) == expected | pace_refs | {last}
    assert [key for key, n in reader.replies.items() if n != 1] == []
    statuses = collections.Counter(reader.statuses.values())
    print(f"replies: {dict(statuses)}; frames received: {dict(reader.events)}")
    assert statuses["ok"] > 1000
    assert statuses["error"] > 1000
    assert reader.events["message"] > 0
    assert reader.events["presence_state"] > 0
    assert reader.error_frames > 0
    assert reader.error_frames_with_ref == []
    assert errors.records == []
