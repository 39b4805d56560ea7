"""The WebSocket endpoint end to end: every client event, every error code, golden frames.

Each test talks through a real WebSocket to a real host: the extension in an
in-process Jupyter server and the service (``jupyter channels serve``) as a
subprocess (tests/hosts.py); tests that reach into the in-process server run on
the extension only.
Fields that vary between runs are pinned by type and replaced by placeholders
(see :func:`pin`); connection ids are read from ``presence_state``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from tornado.websocket import WebSocketClosedError

from jupyter_channels.history.base import StoreUnavailable

from .channels_fixture import USERS, as_user
from .hosts import identities
from .support import config, error_reason

pytestmark = pytest.mark.on_every_host

CHAT = "chat:lobby"
MS = "<ms>"
EPOCH = "<epoch>"


# -- golden frames ------------------------------------------------------------------------------


def pin(value: Any) -> Any:
    """``value`` with ``ts``/``online_at`` (ms since the epoch) and ``epoch`` replaced by
    placeholders, after checking their types."""
    if isinstance(value, list):
        return [pin(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in ("ts", "online_at"):
            assert isinstance(item, int), (key, item)
            assert item > 1_600_000_000_000, (key, item)
            out[key] = MS
        elif key == "epoch":
            assert isinstance(item, str), (key, item)
            assert item, (key, item)
            out[key] = EPOCH
        else:
            out[key] = pin(item)
    return out


@pytest.fixture
def meta(host: str) -> Callable[..., dict[str, Any]]:
    """``meta(conn, user="ada")``: the presence meta of ``user``'s connection ``conn``, with
    the identity the host stamps."""
    users = identities(host)

    def make(conn: str, user: str = "ada") -> dict[str, Any]:
        name, initials, color = users[user]
        return {
            "id": conn,
            "kind": "browser",
            "name": name,
            "initials": initials,
            "color": color,
            "online_at": MS,
            "phx_ref": conn,
        }

    return make


def message_frame(
    offset: int | None, conn: str, payload: Any, *, topic: str = CHAT, user: str = "ada"
) -> dict[str, Any]:
    return {
        "event": "message",
        "topic": topic,
        "subject": "text",
        "payload": payload,
        "offset": offset,
        "ts": MS,
        "from": {"id": conn, "user": user, "name": USERS[user][0], "kind": "browser"},
    }


def ok(topic: str | None, ref: Any, response: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"event": "reply"}
    if topic is not None:
        frame["topic"] = topic
    frame.update({"ref": ref, "payload": {"status": "ok", "response": response}})
    return frame


def refused(topic: str | None, ref: Any, reason: str, detail: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"event": "reply"}
    if topic is not None:
        frame["topic"] = topic
    frame.update(
        {
            "ref": ref,
            "payload": {"status": "error", "response": {"reason": reason, "detail": detail}},
        }
    )
    return frame


def error_event(reason: str, detail: str) -> dict[str, Any]:
    return {"event": "error", "payload": {"reason": reason, "detail": detail}}


def detail_of(frame: dict[str, Any]) -> str:
    """The ``detail`` of an error reply or ``error`` event, checked to be a non-empty string."""
    body = frame["payload"] if frame["event"] == "error" else frame["payload"]["response"]
    assert isinstance(body["detail"], str), frame
    assert body["detail"], frame
    return body["detail"]


# -- helpers ------------------------------------------------------------------------------------


async def joined(client, topic: str = CHAT, user: str = "ada", **extra: Any) -> str:
    """Join ``topic`` (with a ref) and return this connection's id, read from presence_state."""
    reply = await client.request({"event": "join", "topic": topic, **extra})
    assert reply["payload"]["status"] == "ok", reply
    state = await client.expect("presence_state", topic=topic)
    metas = state["payload"][user]["metas"]
    return metas[-1]["id"]


async def publish_many(client, n: int, topic: str = CHAT) -> list[int]:
    return [await client.publish(topic, "text", {"n": i}) for i in range(1, n + 1)]


async def closed(client) -> tuple[int | None, str | None]:
    """Read (skipping everything) until the server closes; the close code and reason."""
    while True:
        raw = await client.recv_raw()
        if raw is None:
            return client.conn.close_code, client.conn.close_reason


# -- join -------------------------------------------------------------------------------------


async def test_a_join_with_a_ref_is_answered_with_the_topic_state_then_presence_state(
    channels_ws, meta
):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": CHAT, "ref": "j1"})
    reply = await ada.recv()
    state = await ada.recv()

    conn = state["payload"]["ada"]["metas"][0]["id"]
    assert pin(reply) == ok(
        CHAT, "j1", {"offset": 0, "epoch": EPOCH, "recovered": True, "messages": []}
    )
    assert pin(state) == {
        "event": "presence_state",
        "topic": CHAT,
        "payload": {"ada": {"metas": [meta(conn)]}},
    }
    await ada.silent()


async def test_a_join_without_a_ref_gets_presence_state_and_no_reply(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": CHAT})

    state = await ada.recv()
    assert state["event"] == "presence_state"
    assert list(state["payload"]) == ["ada"]
    await ada.silent()


@pytest.mark.parametrize("payload", [{"name": "lobby", "tab": 3}, {}], ids=["params", "empty"])
async def test_a_join_payload_object_is_accepted(channels_ws, payload):
    ada = await channels_ws()

    reply = await ada.request({"event": "join", "topic": CHAT, "payload": payload})

    assert reply["payload"]["status"] == "ok"


async def test_a_join_payload_that_is_not_an_object_is_refused_and_nothing_is_joined(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": CHAT, "ref": "j", "payload": ["x"]})

    reply = await ada.recv()
    assert reply == refused(CHAT, "j", "invalid_message", detail_of(reply))
    await ada.silent()
    assert error_reason(await ada.request({"event": "leave", "topic": CHAT})) == "not_joined"


async def test_joining_with_history_returns_the_newest_messages_oldest_first(channels_ws):
    ada = await channels_ws()
    conn = await joined(ada)
    await publish_many(ada, 4)
    grace = await channels_ws(**as_user("grace"))

    await grace.send({"event": "join", "topic": CHAT, "ref": "h", "history": 2})

    reply = await grace.expect("reply", ref="h")
    assert pin(reply) == ok(
        CHAT,
        "h",
        {
            "offset": 4,
            "epoch": EPOCH,
            "recovered": True,
            "messages": [message_frame(3, conn, {"n": 3}), message_frame(4, conn, {"n": 4})],
        },
    )


async def test_joining_without_history_returns_no_messages_but_the_last_offset(channels_ws):
    ada = await channels_ws()
    await joined(ada)
    await publish_many(ada, 3)
    grace = await channels_ws(**as_user("grace"))

    response = await grace.join(CHAT)

    assert response["offset"] == 3
    assert response["messages"] == []


@pytest.mark.parametrize(
    ("since", "offsets"),
    [(0, [1, 2, 3]), (1, [2, 3]), (3, [])],
    ids=["since-0", "since-1", "since-last"],
)
async def test_joining_with_since_returns_every_message_after_it(channels_ws, since, offsets):
    ada = await channels_ws()
    await joined(ada)
    await publish_many(ada, 3)
    grace = await channels_ws(**as_user("grace"))

    response = await grace.join(CHAT, since=since)

    assert response["recovered"] is True
    assert response["offset"] == 3
    assert [m["offset"] for m in response["messages"]] == offsets


@config(history_size=3)
async def test_joining_with_since_beyond_retention_returns_the_retained_ones_not_recovered(
    channels_ws,
):
    ada = await channels_ws()
    await joined(ada)
    await publish_many(ada, 5)
    grace = await channels_ws(**as_user("grace"))

    lost = await grace.join(CHAT, since=1)
    reached = await grace.join(CHAT, since=2)

    assert lost["recovered"] is False
    assert [m["offset"] for m in lost["messages"]] == [3, 4, 5]
    assert reached["recovered"] is True
    assert [m["offset"] for m in reached["messages"]] == [3, 4, 5]


async def test_joining_a_joined_topic_again_answers_like_a_join_with_one_presence(
    channels_ws, meta
):
    ada = await channels_ws()
    conn = await joined(ada)
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")
    await ada.expect("presence_diff")
    await publish_many(ada, 2)
    await ada.drain()
    await grace.drain()

    reply = await ada.request({"event": "join", "topic": CHAT, "history": 1})
    state = await ada.expect("presence_state", topic=CHAT)

    assert [m["offset"] for m in reply["payload"]["response"]["messages"]] == [2]
    assert pin(state["payload"])["ada"] == {"metas": [meta(conn)]}
    await grace.silent()
    await ada.publish(CHAT)
    assert len(await grace.messages(1)) == 1
    assert [f["event"] for f in await ada.drain(1)] == ["message"]


# -- message ------------------------------------------------------------------------------------


async def test_a_message_reaches_every_subscriber_with_the_offset_of_the_senders_reply(
    channels_ws,
):
    ada = await channels_ws()
    ada_conn = await joined(ada)
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")

    await ada.send(
        {"event": "message", "topic": CHAT, "ref": "m1", "subject": "text", "payload": {"t": "hi"}}
    )

    reply = await ada.expect("reply", ref="m1")
    (to_ada,) = await ada.messages(1)
    (to_grace,) = await grace.messages(1)
    assert reply == ok(CHAT, "m1", {"offset": 1})
    assert pin(to_ada) == message_frame(1, ada_conn, {"t": "hi"})
    assert to_grace == to_ada


async def test_the_from_field_is_the_senders_real_identity_even_when_the_frame_sets_it(
    channels_ws,
):
    ada = await channels_ws()
    ada_conn = await joined(ada)
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")
    spoof = {"id": "server", "user": "grace", "name": "Grace Hopper", "kind": "kernel"}

    await ada.send(
        {"event": "message", "topic": CHAT, "subject": "text", "payload": {}, "from": spoof}
    )

    (frame,) = await grace.messages(1)
    assert frame["from"] == {
        "id": ada_conn,
        "user": "ada",
        "name": "Ada Lovelace",
        "kind": "browser",
    }


async def test_a_message_without_a_ref_is_broadcast_without_a_reply(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    await ada.send({"event": "message", "topic": CHAT, "subject": "text", "payload": {"n": 1}})

    frames = await ada.drain(1)
    assert [(f["event"], f["offset"]) for f in frames] == [("message", 1)]


async def test_a_message_without_a_payload_carries_an_empty_object(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    await ada.send({"event": "message", "topic": CHAT, "subject": "text"})

    (frame,) = await ada.messages(1)
    assert frame["payload"] == {}


async def test_offsets_count_up_by_one_per_message_on_each_topic(channels_ws):
    ada = await channels_ws()
    await joined(ada, "chat:one")
    await joined(ada, "chat:two")

    one = await publish_many(ada, 3, "chat:one")
    two = await publish_many(ada, 2, "chat:two")

    assert one == [1, 2, 3]
    assert two == [1, 2]


# -- leave --------------------------------------------------------------------------------------


async def test_a_leave_is_answered_and_stops_delivery(channels_ws, meta):
    ada = await channels_ws()
    ada_conn = await joined(ada)
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")
    await ada.expect("presence_diff")

    await ada.send({"event": "leave", "topic": CHAT, "ref": "l1"})

    assert await ada.expect("reply", ref="l1") == ok(CHAT, "l1", {})
    diff = await grace.expect("presence_diff")
    assert pin(diff) == {
        "event": "presence_diff",
        "topic": CHAT,
        "payload": {"joins": {}, "leaves": {"ada": {"metas": [meta(ada_conn)]}}},
    }
    await grace.publish(CHAT)
    assert await ada.drain() == []


async def test_a_leave_without_a_ref_unsubscribes_without_a_reply(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    await ada.send({"event": "leave", "topic": CHAT})

    await ada.silent()
    reply = await ada.request({"event": "message", "topic": CHAT, "subject": "text"})
    assert error_reason(reply) == "not_joined"


# -- history ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "offsets"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"limit": 2}, [4, 5]),
        ({"before": 4, "limit": 2}, [2, 3]),
        ({"before": 2}, [1]),
        ({"before": 1}, []),
        ({"limit": 0}, []),
    ],
    ids=["all", "newest-2", "2-before-4", "before-2", "before-first", "limit-0"],
)
async def test_history_pages_backwards_with_before_and_limit(channels_ws, page, offsets):
    ada = await channels_ws()
    await joined(ada)
    await publish_many(ada, 5)
    await ada.drain()

    reply = await ada.request({"event": "history", "topic": CHAT, "payload": page})

    assert reply["payload"]["status"] == "ok"
    assert list(reply["payload"]["response"]) == ["messages"]
    assert [m["offset"] for m in reply["payload"]["response"]["messages"]] == offsets


async def test_a_history_reply_holds_the_stored_message_frames(channels_ws):
    ada = await channels_ws()
    conn = await joined(ada)
    await publish_many(ada, 2)
    live = await ada.messages(2)

    await ada.send({"event": "history", "topic": CHAT, "ref": 9, "payload": {"before": 3}})

    reply = await ada.expect("reply", ref=9)
    assert pin(reply) == ok(
        CHAT, 9, {"messages": [message_frame(1, conn, {"n": 1}), message_frame(2, conn, {"n": 2})]}
    )
    assert reply["payload"]["response"]["messages"] == live


async def test_a_history_request_without_a_ref_gets_nothing(channels_ws):
    ada = await channels_ws()
    await joined(ada)
    await publish_many(ada, 2)
    await ada.drain()

    await ada.send({"event": "history", "topic": CHAT, "payload": {}})

    await ada.silent()


# -- heartbeat ----------------------------------------------------------------------------------


async def test_a_heartbeat_is_answered_with_an_empty_ok_reply_without_topic(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "heartbeat", "ref": "hb"})

    assert await ada.recv() == ok(None, "hb", {})


async def test_a_heartbeat_without_a_ref_gets_nothing(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "heartbeat"})

    await ada.silent()


# -- replies ------------------------------------------------------------------------------------


async def test_frames_without_a_ref_get_no_reply(channels_ws):
    ada = await channels_ws()

    for frame in (
        {"event": "join", "topic": CHAT},
        {"event": "message", "topic": CHAT, "subject": "text", "payload": {}},
        {"event": "history", "topic": CHAT, "payload": {}},
        {"event": "heartbeat"},
    ):
        await ada.send(frame)
    events = [frame["event"] for frame in await ada.drain(2)]
    await ada.send({"event": "leave", "topic": CHAT})

    assert events == ["presence_state", "message"]
    await ada.silent()


@pytest.mark.parametrize("ref", [0, 7, "abc", ""], ids=repr)
async def test_a_string_or_integer_ref_is_echoed_unchanged(channels_ws, ref):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": CHAT, "ref": ref})

    reply = await ada.recv()
    assert reply["event"] == "reply"
    assert reply["ref"] == ref
    assert type(reply["ref"]) is type(ref)


@pytest.mark.parametrize("ref", [True, 1.5, [1], {"id": 1}, None], ids=repr)
async def test_a_ref_that_is_not_a_string_or_integer_counts_as_no_ref(channels_ws, ref):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": CHAT, "ref": ref})
    await ada.send({"event": "nonsense", "ref": ref})

    frames = await ada.drain(2)
    assert [f["event"] for f in frames] == ["presence_state", "error"]
    assert "ref" not in frames[1]


# -- errors: invalid_message --------------------------------------------------------------------


async def test_a_frame_that_is_not_json_gets_an_error_event(channels_ws):
    ada = await channels_ws()

    await ada.send("hello?")

    assert await ada.recv() == error_event("invalid_message", "frame is not JSON")


@pytest.mark.parametrize("text", ["[1, 2]", '"join"', "42", "null"], ids=repr)
async def test_a_json_frame_that_is_not_an_object_gets_an_error_event(channels_ws, text):
    ada = await channels_ws()

    await ada.send(text)

    assert await ada.recv() == error_event("invalid_message", "frame is not a JSON object")


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "subscribe", "topic": CHAT},
        {"topic": CHAT},
        {"event": "reply", "topic": CHAT},
        {"event": "join", "topic": "bad topic!"},
        {"event": "join"},
        {"event": "message", "topic": CHAT, "payload": {}},
        {"event": "join", "topic": CHAT, "history": -1},
    ],
    ids=["unknown-event", "no-event", "server-event", "bad-topic", "no-topic", "no-subject", "neg"],
)
async def test_a_bad_object_without_a_ref_gets_an_error_event(channels_ws, frame):
    ada = await channels_ws()

    await ada.send(frame)

    reply = await ada.recv()
    assert reply == error_event("invalid_message", detail_of(reply))


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "subscribe", "topic": CHAT},
        {"event": "message", "topic": CHAT, "subject": ""},
        {"event": "join", "topic": CHAT, "since": "3"},
        {"event": "join", "topic": CHAT, "payload": "params"},
        {"event": "history", "topic": CHAT, "payload": {"limit": "ten"}},
        {"event": "history", "topic": CHAT, "payload": []},
    ],
    ids=["unknown-event", "empty-subject", "since-string", "join-payload", "limit", "history"],
)
async def test_a_bad_object_with_a_ref_gets_an_error_reply_echoing_ref_and_topic(
    channels_ws, frame
):
    ada = await channels_ws()

    await ada.send({**frame, "ref": "bad"})

    reply = await ada.recv()
    assert reply == refused(CHAT, "bad", "invalid_message", detail_of(reply))


async def test_a_binary_frame_gets_an_error_event(channels_ws):
    ada = await channels_ws()

    await ada.conn.write_message(b'{"event": "heartbeat", "ref": 1}', binary=True)

    reply = await ada.recv()
    assert reply == error_event("invalid_message", detail_of(reply))


async def test_bad_frames_never_close_the_connection(channels_ws):
    ada = await channels_ws()

    for text in ("nope", "[]", '{"event": "x"}', '{"event": "join", "topic": "?"}'):
        await ada.send(text)
    await ada.conn.write_message(b"\x00", binary=True)

    assert [error_reason(f) for f in await ada.drain(5)] == ["invalid_message"] * 5
    await joined(ada)
    assert await ada.publish(CHAT) == 1


# -- errors: unmatched_topic, not_joined ---------------------------------------------------------


@config(default_channel=None, channels={"chat:*": "jupyter_channels.channel:RebroadcastChannel"})
async def test_a_topic_no_channel_serves_is_refused_with_unmatched_topic(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": "other:x", "ref": "u"})

    reply = await ada.recv()
    assert reply == refused("other:x", "u", "unmatched_topic", "no channel serves 'other:x'")
    await ada.silent()
    await joined(ada, "chat:x")


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "message", "topic": CHAT, "subject": "text", "payload": {}},
        {"event": "leave", "topic": CHAT},
        {"event": "history", "topic": CHAT, "payload": {}},
    ],
    ids=["message", "leave", "history"],
)
async def test_a_frame_for_a_topic_not_joined_is_refused_with_not_joined(channels_ws, frame):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")

    await ada.send({**frame, "ref": "n"})

    assert await ada.recv() == refused(CHAT, "n", "not_joined", f"not joined to {CHAT!r}")
    await grace.silent()


async def test_a_frame_for_a_topic_not_joined_without_a_ref_gets_an_error_event(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "message", "topic": CHAT, "subject": "text"})

    assert await ada.recv() == error_event("not_joined", f"not joined to {CHAT!r}")


# -- errors raised by channels --------------------------------------------------------------------


async def test_a_channel_refusing_a_join_gives_join_rejected_and_no_presence(channels_ws):
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": "invite:x", "ref": "r"})

    assert await ada.recv() == refused("invite:x", "r", "join_rejected", "invite required")
    await ada.silent()


async def test_a_channel_refusing_a_message_gives_unauthorized(channels_ws):
    ada = await channels_ws()
    await joined(ada, "readonly:news")

    await ada.send({"event": "message", "topic": "readonly:news", "subject": "text", "ref": 4})

    assert await ada.recv() == refused(
        "readonly:news", 4, "unauthorized", "this topic is read-only"
    )
    await ada.silent()


async def test_a_channel_raising_gives_internal_error_and_the_connection_carries_on(channels_ws):
    ada = await channels_ws()
    await joined(ada, "boom:1")
    await joined(ada)

    await ada.send({"event": "message", "topic": "boom:1", "subject": "text", "ref": "x"})

    reply = await ada.recv()
    assert reply == refused("boom:1", "x", "internal_error", detail_of(reply))
    assert await ada.publish(CHAT) == 1
    assert await ada.publish("boom:1", "ok") == 1


@config(hook_timeout=0.2)
async def test_a_channel_that_does_not_answer_in_time_gives_timeout(channels_ws):
    ada = await channels_ws()
    await joined(ada, "slow:1")

    await ada.send({"event": "message", "topic": "slow:1", "subject": "text", "ref": "t"})

    reply = await ada.recv()
    assert reply == refused("slow:1", "t", "timeout", detail_of(reply))
    await joined(ada)
    assert await ada.publish(CHAT) == 1


# -- errors: limits -----------------------------------------------------------------------------


@config(max_message_size=1000)
async def test_a_frame_over_max_message_size_is_dropped_with_too_large(channels_ws):
    ada = await channels_ws()
    await joined(ada)
    big = {"event": "message", "topic": CHAT, "subject": "text", "payload": "x" * 1500}

    await ada.send({**big, "ref": "big"})
    await ada.send(big)

    detail = "frame is over max_message_size (1000 bytes)"
    assert await ada.recv() == refused(CHAT, "big", "too_large", detail)
    assert await ada.recv() == error_event("too_large", detail)
    await ada.silent()
    assert await ada.publish(CHAT, "text", {"small": True}) == 1


@config(max_message_size=1000)
async def test_a_frame_over_max_message_size_counts_bytes_not_characters(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    await ada.send({"event": "message", "topic": CHAT, "subject": "text", "payload": "é" * 600})

    assert error_reason(await ada.recv()) == "too_large"


@config(max_message_size=1000)
async def test_a_frame_over_four_times_max_message_size_closes_the_connection_with_1009(
    channels_ws,
):
    ada = await channels_ws()

    await ada.send({"event": "heartbeat", "ref": "x" * 4100})

    code, _ = await closed(ada)
    assert code == 1009


@config(rate_limit=0.001, rate_burst=3)
async def test_frames_over_the_rate_limit_are_dropped_with_rate_limited(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await joined(grace, user="grace")
    await joined(ada)  # 1 of 3
    await ada.publish(CHAT)  # 2 of 3
    await ada.publish(CHAT)  # 3 of 3
    assert len(await grace.messages(2)) == 2

    await ada.send({"event": "message", "topic": CHAT, "subject": "text", "ref": "r"})
    await ada.send({"event": "message", "topic": CHAT, "subject": "text"})

    assert await ada.expect("reply", ref="r") == refused(
        CHAT, "r", "rate_limited", "rate limit exceeded"
    )
    assert await ada.expect("error") == error_event("rate_limited", "rate limit exceeded")
    await grace.silent()


@config(max_topics_per_connection=2)
async def test_joining_more_than_max_topics_per_connection_gives_too_many_topics(channels_ws):
    ada = await channels_ws()
    await joined(ada, "chat:1")
    await joined(ada, "chat:2")

    await ada.send({"event": "join", "topic": "chat:3", "ref": "3"})

    reply = await ada.recv()
    assert reply == refused("chat:3", "3", "too_many_topics", detail_of(reply))
    await ada.silent()
    await ada.request({"event": "leave", "topic": "chat:1"})
    await joined(ada, "chat:3")


# -- errors: unavailable ------------------------------------------------------------------------


@pytest.fixture
def broker(channels_app):
    return channels_app.hub.broker


def failing_publish(draft):
    future = asyncio.get_running_loop().create_future()
    future.set_exception(StoreUnavailable("the history store is down"))
    return future


async def failing_read(topic, **kwargs):
    raise StoreUnavailable("the history store is down")


async def test_a_message_the_store_cannot_take_gets_unavailable_and_is_not_delivered(
    channels_ws, broker, monkeypatch
):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await joined(ada)
    await joined(grace, user="grace")
    await ada.drain()
    monkeypatch.setattr(broker, "publish", failing_publish)

    await ada.send({"event": "message", "topic": CHAT, "subject": "text", "ref": "u"})

    assert await ada.recv() == refused(CHAT, "u", "unavailable", "the history store is down")
    await grace.silent()


async def test_a_join_when_the_store_cannot_be_read_gets_unavailable_and_joins_nothing(
    channels_ws, broker, monkeypatch
):
    ada = await channels_ws()
    monkeypatch.setattr(broker, "read", failing_read)

    await ada.send({"event": "join", "topic": CHAT, "ref": "j"})

    assert await ada.recv() == refused(CHAT, "j", "unavailable", "the history store is down")
    await ada.silent()
    monkeypatch.undo()
    reply = await ada.request({"event": "message", "topic": CHAT, "subject": "text"})
    assert error_reason(reply) == "not_joined"


async def test_a_history_request_when_the_store_cannot_be_read_gets_unavailable(
    channels_ws, broker, monkeypatch
):
    ada = await channels_ws()
    await joined(ada)
    monkeypatch.setattr(broker, "read", failing_read)

    await ada.send({"event": "history", "topic": CHAT, "ref": "h"})

    assert await ada.recv() == refused(CHAT, "h", "unavailable", "the history store is down")


# -- presence -----------------------------------------------------------------------------------


async def test_each_client_sees_the_other_join_and_leave_on_disconnect(channels_ws, meta):
    ada = await channels_ws()
    ada_conn = await joined(ada)
    grace = await channels_ws(**as_user("grace"))

    await grace.send({"event": "join", "topic": CHAT, "ref": "g"})
    await grace.expect("reply", ref="g")
    state = await grace.recv()
    grace_conn = state["payload"]["grace"]["metas"][0]["id"]
    joins = await ada.recv()
    grace.close()
    leaves = await ada.recv()

    assert pin(state) == {
        "event": "presence_state",
        "topic": CHAT,
        "payload": {
            "ada": {"metas": [meta(ada_conn)]},
            "grace": {"metas": [meta(grace_conn, "grace")]},
        },
    }
    assert pin(joins) == {
        "event": "presence_diff",
        "topic": CHAT,
        "payload": {"joins": {"grace": {"metas": [meta(grace_conn, "grace")]}}, "leaves": {}},
    }
    assert pin(leaves) == {
        "event": "presence_diff",
        "topic": CHAT,
        "payload": {"joins": {}, "leaves": {"grace": {"metas": [meta(grace_conn, "grace")]}}},
    }
    assert joins["payload"]["joins"] == leaves["payload"]["leaves"]


async def test_two_connections_of_one_user_are_two_metas_under_one_username(channels_ws):
    first = await channels_ws()
    one = await joined(first)
    second = await channels_ws()

    await second.send({"event": "join", "topic": CHAT, "ref": "2"})
    await second.expect("reply", ref="2")
    state = await second.recv()

    metas = state["payload"]["ada"]["metas"]
    assert list(state["payload"]) == ["ada"]
    assert metas[0]["id"] == one  # the earlier connection first
    assert len({m["phx_ref"] for m in metas}) == 2


async def test_the_joiner_gets_no_presence_diff_about_itself(channels_ws):
    ada = await channels_ws()

    await joined(ada)

    await ada.silent()


# -- heartbeat and idle connections ---------------------------------------------------------------


@config(heartbeat_interval=0.1)
async def test_the_ping_text_frame_arrives_every_heartbeat_interval(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    raws = [await ada.recv_raw() for _ in range(3)]

    assert raws == ["ping", "ping", "ping"]


@config(heartbeat_interval=0.1, idle_timeout=0.5)
async def test_a_client_that_never_answers_pings_is_closed_as_idle_with_4000(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await joined(ada)
    await joined(grace, user="grace")
    ada.conn.protocol._send_pong = lambda data: None  # a peer that is gone without a FIN

    assert await closed(ada) == (4000, "idle timeout")
    diff = await grace.expect("presence_diff")
    assert list(diff["payload"]["leaves"]) == ["ada"]


@config(heartbeat_interval=0.1, idle_timeout=1.0)
async def test_a_client_that_answers_pings_stays_connected_past_the_idle_timeout(channels_ws):
    ada = await channels_ws()
    await joined(ada)

    # 25 heartbeats are two and a half idle timeouts; the Tornado client answers each ping.
    while ada.pings < 25:
        assert await ada.recv_raw() == "ping"
        ada.pings += 1

    assert await ada.publish(CHAT) == 1


async def test_client_disconnect_closes_the_connection_with_1000_and_its_reason(
    channels_ws, channels_app
):
    ada = await channels_ws()
    await joined(ada)

    for client in list(channels_app.hub.clients.values()):
        client.disconnect("bye")

    assert await closed(ada) == (1000, "bye")
    with pytest.raises(WebSocketClosedError):
        await ada.send(json.dumps({"event": "heartbeat"}))


async def test_a_join_with_presence_false_gets_no_presence_frames_but_is_a_member(channels_ws):
    quiet = await channels_ws()
    reply = await quiet.request({"event": "join", "topic": "chat:quiet", "presence": False})
    assert reply["payload"]["status"] == "ok"

    other = await channels_ws(**as_user("grace"))
    await other.request({"event": "join", "topic": "chat:quiet"})
    state = await other.expect("presence_state", topic="chat:quiet")
    assert sorted(state["payload"]) == ["ada", "grace"]  # the quiet one is a member
    await other.publish("chat:quiet", "text", {"n": 1})

    frames = await quiet.drain(at_least=1)
    assert [f["event"] for f in frames] == ["message"]  # no presence_state, no diff


async def test_presence_must_be_a_boolean(channels_ws):
    client = await channels_ws()
    reply = await client.request({"event": "join", "topic": "chat:quiet", "presence": "no"})
    assert error_reason(reply) == "invalid_message"
