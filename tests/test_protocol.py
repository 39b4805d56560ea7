"""The wire format without I/O: decoding every client frame, its errors, golden encodings."""

from __future__ import annotations

import json
import mmap

import pytest

from jupyter_channels.constants import ErrorCode, Event
from jupyter_channels.protocol import (
    Frame,
    ProtocolError,
    decode,
    dumps,
    encode_event,
    encode_message,
    error_frame,
    error_reply,
    ok_reply,
    peek,
    ws_text_frame,
)


def frame(**fields: object) -> str:
    return json.dumps(fields)


def refused(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(text)
    return info.value


# -- decoding valid frames --------------------------------------------------------------------


def test_a_join_with_every_field_decodes_to_all_of_them():
    text = frame(
        event="join",
        topic="chat:lobby",
        ref="1",
        payload={"invite": "ok"},
        since=7,
        history=20,
    )

    assert decode(text) == Frame(
        event=Event.JOIN,
        ref="1",
        topic="chat:lobby",
        payload={"invite": "ok"},
        since=7,
        history=20,
    )


def test_an_amber_join_without_ref_or_payload_decodes_with_defaults():
    assert decode(frame(event="join", topic="chat:lobby")) == Frame(
        event=Event.JOIN, ref=None, topic="chat:lobby", payload={}, since=None, history=0
    )


def test_a_join_asking_for_more_history_than_the_maximum_gets_the_maximum():
    assert decode(frame(event="join", topic="t", history=10_000)).history == 500


def test_a_message_with_every_field_decodes_to_all_of_them():
    text = frame(event="message", topic="chat:lobby", ref=3, subject="text", payload={"text": "hi"})

    assert decode(text) == Frame(
        event=Event.MESSAGE, ref=3, topic="chat:lobby", subject="text", payload={"text": "hi"}
    )


@pytest.mark.parametrize("payload", [[1, 2], "hi", 3.5, None, True], ids=repr)
def test_a_message_payload_may_be_any_json_value(payload):
    text = frame(event="message", topic="t", subject="s", payload=payload)

    assert decode(text).payload == payload


def test_a_message_without_payload_gets_an_empty_object():
    assert decode(frame(event="message", topic="t", subject="s")).payload == {}


def test_a_leave_decodes_topic_and_ref():
    assert decode(frame(event="leave", topic="chat:lobby", ref="9")) == Frame(
        event=Event.LEAVE, ref="9", topic="chat:lobby"
    )


def test_a_history_request_with_every_field_decodes_to_all_of_them():
    text = frame(event="history", topic="chat:lobby", ref="h", payload={"before": 40, "limit": 10})

    decoded = decode(text)

    assert (decoded.event, decoded.ref, decoded.topic) == (Event.HISTORY, "h", "chat:lobby")
    assert (decoded.before, decoded.limit) == (40, 10)


def test_a_history_request_without_payload_reads_the_newest_fifty():
    decoded = decode(frame(event="history", topic="t", ref="h"))

    assert (decoded.before, decoded.limit) == (None, 50)


def test_a_history_limit_over_the_maximum_is_capped_at_five_hundred():
    assert decode(frame(event="history", topic="t", payload={"limit": 9999})).limit == 500


def test_a_heartbeat_decodes_its_ref_and_ignores_other_fields():
    assert decode(frame(event="heartbeat", ref="hb", topic="")) == Frame(
        event=Event.HEARTBEAT, ref="hb"
    )


@pytest.mark.parametrize(
    "topic",
    ["a", "x" * 255, "chat:lobby", "A-Z_a.z:0@9/+-", "user@host/room+1"],
)
def test_topics_of_the_allowed_characters_and_lengths_are_accepted(topic):
    assert decode(frame(event="leave", topic=topic)).topic == topic


# -- refused frames ---------------------------------------------------------------------------

INVALID = {
    "not JSON": ("{event: join}", None),
    "truncated JSON": ('{"event": "join"', None),
    "empty text": ("", None),
    "a JSON array": (json.dumps([{"event": "heartbeat", "ref": "1"}]), None),
    "a JSON string": ('"heartbeat"', None),
    "a JSON number": ("42", None),
    "null": ("null", None),
    "missing event": (frame(topic="t", ref="r"), "r"),
    "unknown event": (frame(event="subscribe", topic="t", ref="r"), "r"),
    "a server-only event": (frame(event="reply", topic="t", ref="r"), "r"),
    "event not a string": (frame(event=1, topic="t", ref="r"), "r"),
    "event a list": (frame(event=["join"], topic="t", ref="r"), "r"),
    "event an object": (frame(event={"join": 1}, topic="t", ref="r"), "r"),
    "missing topic": (frame(event="join", ref="r"), "r"),
    "topic not a string": (frame(event="join", topic=5, ref="r"), "r"),
    "topic a list": (frame(event="leave", topic=["t"], ref="r"), "r"),
    "empty topic": (frame(event="join", topic="", ref="r"), "r"),
    "256-character topic": (frame(event="join", topic="x" * 256, ref="r"), "r"),
    "topic with a space": (frame(event="join", topic="chat lobby", ref="r"), "r"),
    "topic with a star": (frame(event="join", topic="chat:*", ref="r"), "r"),
    "topic with a quote": (frame(event="message", topic='a"b', subject="s", ref="r"), "r"),
    "topic with a non-ASCII letter": (frame(event="leave", topic="café", ref="r"), "r"),
    "topic with a newline": (frame(event="leave", topic="a\nb", ref="r"), "r"),
    "join payload a list": (frame(event="join", topic="t", payload=[1], ref="r"), "r"),
    "join payload a string": (frame(event="join", topic="t", payload="x", ref="r"), "r"),
    "since a string": (frame(event="join", topic="t", since="3", ref="r"), "r"),
    "since negative": (frame(event="join", topic="t", since=-1, ref="r"), "r"),
    "since a float": (frame(event="join", topic="t", since=1.5, ref="r"), "r"),
    "since a boolean": (frame(event="join", topic="t", since=True, ref="r"), "r"),
    "history a string": (frame(event="join", topic="t", history="all", ref="r"), "r"),
    "history negative": (frame(event="join", topic="t", history=-5, ref="r"), "r"),
    "history a boolean": (frame(event="join", topic="t", history=False, ref="r"), "r"),
    "missing subject": (frame(event="message", topic="t", payload={}, ref="r"), "r"),
    "subject not a string": (frame(event="message", topic="t", subject=1, ref="r"), "r"),
    "empty subject": (frame(event="message", topic="t", subject="", ref="r"), "r"),
    "256-character subject": (frame(event="message", topic="t", subject="s" * 256, ref="r"), "r"),
    "history payload a list": (frame(event="history", topic="t", payload=[], ref="r"), "r"),
    "limit a string": (frame(event="history", topic="t", payload={"limit": "9"}, ref="r"), "r"),
    "limit negative": (frame(event="history", topic="t", payload={"limit": -1}, ref="r"), "r"),
    "limit a float": (frame(event="history", topic="t", payload={"limit": 2.0}, ref="r"), "r"),
    "before a string": (frame(event="history", topic="t", payload={"before": "9"}, ref="r"), "r"),
    "before negative": (frame(event="history", topic="t", payload={"before": -3}, ref="r"), "r"),
    "before a boolean": (
        frame(event="history", topic="t", payload={"before": True}, ref="r"),
        "r",
    ),
}


@pytest.mark.parametrize(("text", "ref"), list(INVALID.values()), ids=list(INVALID))
def test_an_invalid_frame_is_refused_as_invalid_message_with_its_readable_ref(text, ref):
    error = refused(text)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.ref == ref
    assert error.detail


@pytest.mark.parametrize(
    ("ref", "readable"),
    [
        ("abc", "abc"),
        ("", ""),
        (0, 0),
        (12345678901234567890, 12345678901234567890),
        (True, None),
        (False, None),
        (None, None),
        (1.5, None),
        ([1], None),
        ({"id": 1}, None),
    ],
    ids=repr,
)
def test_only_a_string_or_integer_ref_is_readable(ref, readable):
    assert decode(frame(event="heartbeat", ref=ref)).ref == readable
    assert refused(frame(event="nope", ref=ref)).ref == readable


def test_an_error_for_a_bad_field_echoes_the_topic():
    assert refused(frame(event="join", topic="chat:lobby", since="x", ref=1)).topic == "chat:lobby"


def test_an_error_for_a_bad_topic_echoes_it_only_when_it_is_a_string_of_at_most_255():
    assert refused(frame(event="join", topic="a b", ref=1)).topic == "a b"
    assert refused(frame(event="join", topic="x" * 256, ref=1)).topic is None
    assert refused(frame(event="join", topic=7, ref=1)).topic is None


@pytest.mark.parametrize(
    "text",
    [
        '{"event": "message", "topic": "t", "subject": "s", "payload": NaN}',
        '{"event": "message", "topic": "t", "subject": "s", "payload": [Infinity]}',
        '{"event": "join", "topic": "t", "payload": {"x": -Infinity}}',
        '{"event": "message", "topic": "t", "subject": "s", "payload": 1e999}',
    ],
    ids=["NaN", "Infinity", "-Infinity", "a float overflowing to infinity"],
)
def test_a_frame_with_a_non_finite_number_is_not_json(text):
    assert refused(text).code is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        '{"event": "message", "topic": "t", "subject": "\\ud800", "payload": {}, "ref": 1}',
        '{"event": "message", "topic": "t", "subject": "s", "payload": ["\\udfff"], "ref": 1}',
        '{"event": "join", "topic": "t\\ud83d", "ref": 1}',
        '{"event": "nope\\udc00", "ref": 1}',
    ],
    ids=["subject", "payload", "topic", "event"],
)
def test_a_frame_with_a_lone_surrogate_is_refused_because_it_cannot_be_sent_as_utf8(text):
    error = refused(text)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.ref == 1
    ws_text_frame(error_reply(error.topic, error.ref, error.code, error.detail))


def test_a_ref_with_a_lone_surrogate_is_not_readable():
    assert refused('{"event": "heartbeat", "ref": "\\ud800"}').ref is None


def test_an_escaped_surrogate_pair_is_an_ordinary_character():
    text = '{"event": "message", "topic": "t", "subject": "\\ud83d\\ude00", "ref": "\\u00e9"}'

    decoded = decode(text)

    assert (decoded.subject, decoded.ref) == ("\U0001f600", "é")


def nested_message(depth: int) -> str:
    payload = "[" * depth + "]" * depth
    return f'{{"event":"message","topic":"t","subject":"s","ref":1,"payload":{payload}}}'


def deeper(levels: int, call):
    return call() if levels == 0 else deeper(levels - 1, call)


def test_a_frame_nested_deeper_than_the_decoder_can_follow_is_refused_not_crashed():
    error = refused("[" * 100_000)

    assert error.code is ErrorCode.INVALID_MESSAGE
    assert error.ref is None


@pytest.mark.parametrize("depth", [50, 200, 900, 990])
def test_a_deeply_nested_frame_is_refused_or_can_be_encoded_again_from_a_deeper_stack(depth):
    try:
        decoded = decode(nested_message(depth))
    except ProtocolError as e:
        error = e
    else:
        error = None
        assert deeper(100, lambda: dumps(decoded.payload)) == "[" * depth + "]" * depth

    assert error is None or error.code is ErrorCode.INVALID_MESSAGE


def test_peeking_at_an_oversized_frame_never_echoes_what_cannot_be_sent():
    assert peek("[" * 100_000) == (None, None)
    assert peek('{"ref": "\\ud800", "topic": "t\\udfff"}') == (None, None)
    assert peek('{"ref": 5, "topic": "chat:lobby", "payload": NaN}') == (None, None)
    assert peek('{"ref": 5, "topic": "chat:lobby"}') == (5, "chat:lobby")


# -- encoding ---------------------------------------------------------------------------------


def test_an_ok_reply_echoes_topic_and_ref_around_the_response():
    assert ok_reply("chat:lobby", "1", {"offset": 3}) == (
        '{"event":"reply","topic":"chat:lobby","ref":"1",'
        '"payload":{"status":"ok","response":{"offset":3}}}'
    )


def test_an_ok_reply_without_topic_or_response_has_no_topic_and_an_empty_response():
    assert ok_reply(None, 7) == '{"event":"reply","ref":7,"payload":{"status":"ok","response":{}}}'


def test_an_error_reply_carries_reason_and_detail():
    assert error_reply("t", "r", ErrorCode.NOT_JOINED, "not joined to 't'") == (
        '{"event":"reply","topic":"t","ref":"r","payload":{"status":"error",'
        '"response":{"reason":"not_joined","detail":"not joined to \'t\'"}}}'
    )


def test_an_error_reply_escapes_its_detail_and_keeps_non_ascii_text():
    assert error_reply(None, 1, ErrorCode.JOIN_REJECTED, 'sag "bitte", schön') == (
        '{"event":"reply","ref":1,"payload":{"status":"error",'
        '"response":{"reason":"join_rejected","detail":"sag \\"bitte\\", schön"}}}'
    )


def test_an_error_frame_carries_reason_and_detail_and_no_ref():
    assert error_frame(ErrorCode.INVALID_MESSAGE, "frame is not JSON") == (
        '{"event":"error","payload":{"reason":"invalid_message","detail":"frame is not JSON"}}'
    )


def test_an_error_frame_given_a_ref_carries_it_last():
    assert error_frame(ErrorCode.RATE_LIMITED, "slow down", "x") == (
        '{"event":"error","payload":{"reason":"rate_limited","detail":"slow down"},"ref":"x"}'
    )


SENDER = '{"id":"c1","user":"alice","name":"Alice","kind":"browser"}'


def test_a_message_frame_holds_every_field_in_order():
    encoded = encode_message("chat:lobby", "text", '{"text":"hi"}', 3, 1700000000000, SENDER)

    assert encoded == (
        '{"event":"message","topic":"chat:lobby","subject":"text","payload":{"text":"hi"},'
        '"offset":3,"ts":1700000000000,'
        '"from":{"id":"c1","user":"alice","name":"Alice","kind":"browser"}}'
    )


def test_a_pushed_message_frame_has_a_null_offset():
    encoded = encode_message("t", "note", "[1,2]", None, 5, SENDER)

    assert encoded == (
        '{"event":"message","topic":"t","subject":"note","payload":[1,2],"offset":null,"ts":5,'
        '"from":{"id":"c1","user":"alice","name":"Alice","kind":"browser"}}'
    )


def test_a_message_frame_escapes_its_subject():
    encoded = encode_message("t", 'a"b\\c\n', "null", 1, 2, SENDER)

    assert json.loads(encoded)["subject"] == 'a"b\\c\n'
    assert encoded.startswith('{"event":"message","topic":"t","subject":"a\\"b\\\\c\\n",')


def test_a_presence_state_frame_is_event_topic_payload():
    state = {"alice": {"metas": [{"id": "c1", "phx_ref": "c1"}]}}

    assert encode_event(Event.PRESENCE_STATE, "chat:lobby", state) == (
        '{"event":"presence_state","topic":"chat:lobby",'
        '"payload":{"alice":{"metas":[{"id":"c1","phx_ref":"c1"}]}}}'
    )


def test_a_presence_diff_frame_is_event_topic_payload():
    assert encode_event(Event.PRESENCE_DIFF, "t", {"joins": {}, "leaves": {}}) == (
        '{"event":"presence_diff","topic":"t","payload":{"joins":{},"leaves":{}}}'
    )


def test_a_close_frame_carries_the_reason():
    assert encode_event(Event.CLOSE, "t", {"reason": "kicked"}) == (
        '{"event":"close","topic":"t","payload":{"reason":"kicked"}}'
    )


# -- WebSocket framing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (70000, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70"),
    ],
)
def test_a_text_frame_is_fin_text_opcode_then_the_length_then_the_utf8_bytes(length, header):
    text = "x" * length

    frame = ws_text_frame(text)

    data = b"".join(bytes(chunk) for chunk in frame.chunks)
    assert data == header + text.encode()
    assert frame.size == len(data)


def test_a_large_payload_is_kept_apart_from_its_header_and_not_on_the_heap():
    frame = ws_text_frame("x" * 70000)

    header, payload = frame.chunks
    assert header == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70"
    assert isinstance(payload, memoryview)
    assert isinstance(payload.obj, mmap.mmap)


def test_a_small_frame_is_one_chunk():
    frame = ws_text_frame("hello")

    assert frame.chunks == (b"\x81\x05hello",)


def test_a_text_frame_length_counts_utf8_bytes_not_characters():
    text = "é" * 63  # 63 characters, 126 bytes

    (data,) = ws_text_frame(text).chunks

    assert data[:4] == b"\x81\x7e\x00\x7e"
    assert data[4:].decode() == text
