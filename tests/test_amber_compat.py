"""Amber's JavaScript client, unchanged, against the channels endpoint of every host
(the extension and the service).

amber.js sends exactly three frames, as ``JSON.stringify`` writes them: no
``ref``, no join payload, no heartbeat. It reads the text frame ``"ping"`` as
liveness, parses every other frame as JSON and routes it by ``topic`` and then
``subject`` to the callback registered with ``channel.on(subject, cb)``. Such
a client must get the broadcasts and never a reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .channels_fixture import as_user
from .support import config

pytestmark = pytest.mark.on_every_host

ROOM = "chat_room:123"


# What amber.js sends, byte for byte (JSON.stringify: no spaces, keys in this order).
def amber_join(topic: str) -> str:
    return json.dumps({"event": "join", "topic": topic}, separators=(",", ":"))


def amber_leave(topic: str) -> str:
    return json.dumps({"event": "leave", "topic": topic}, separators=(",", ":"))


def amber_push(topic: str, subject: str, payload: Any) -> str:
    frame = {"event": "message", "topic": topic, "subject": subject, "payload": payload}
    return json.dumps(frame, separators=(",", ":"))


async def received(client, at_least: int = 0, timeout: float = 0.3) -> list[Any]:
    """Every raw frame, ``"ping"`` or parsed the way amber.js does (anything else would
    throw in ``JSON.parse``): ``at_least`` of them however long they take, then more
    until nothing arrives for ``timeout`` seconds."""
    frames: list[Any] = []
    while len(frames) < at_least:
        raw = await client.recv_raw()
        assert raw is not None, "the server closed the connection"
        frames.append(raw if raw == "ping" else json.loads(raw))
    while True:
        try:
            raw = await client.recv_raw(timeout)
        except asyncio.TimeoutError:
            return frames
        assert raw is not None, "the server closed the connection"
        frames.append(raw if raw == "ping" else json.loads(raw))


def amber_sees(frames: list[Any], topic: str) -> list[tuple[str, Any]]:
    """What ``channel.on(subject, cb)`` callbacks of ``topic`` get: ``(subject, payload)``."""
    return [
        (f["subject"], f["payload"])
        for f in frames
        if isinstance(f, dict) and f.get("topic") == topic and "subject" in f
    ]


async def test_join_message_and_leave_work_and_never_get_a_reply(channels_ws):
    alice = await channels_ws()
    bob = await channels_ws(**as_user("grace"))
    # One join after the other: the two connections' frames are not ordered between them.
    await alice.send(amber_join(ROOM))
    seen_by_alice = await received(alice, 1)  # presence_state
    await bob.send(amber_join(ROOM))
    seen_by_bob = await received(bob, 1)  # presence_state

    await alice.send(amber_push(ROOM, "msg:new", {"message": "hi"}))
    seen_by_alice += await received(alice, 2)  # presence_diff, message
    seen_by_bob += await received(bob, 1)  # message
    await alice.send(amber_leave(ROOM))
    seen_by_bob += await received(bob, 1)  # presence_diff: alice left
    await bob.send(amber_push(ROOM, "msg:new", {"message": "still there?"}))
    seen_by_bob += await received(bob, 1)
    after_leave = await received(alice)

    assert amber_sees(seen_by_alice, ROOM) == [("msg:new", {"message": "hi"})]  # sender included
    assert amber_sees(seen_by_bob, ROOM) == [
        ("msg:new", {"message": "hi"}),
        ("msg:new", {"message": "still there?"}),
    ]
    assert after_leave == []
    events = {f["event"] for f in seen_by_alice + seen_by_bob}
    assert "reply" not in events
    assert "error" not in events


async def test_a_broadcast_carries_amber_s_four_keys_with_the_clients_values(channels_ws):
    alice = await channels_ws()
    await alice.send(amber_join(ROOM))

    await alice.send(amber_push(ROOM, "msg:new", {"message": "hi", "n": [1, 2]}))

    (frame,) = [f for f in await received(alice, 2) if f["event"] == "message"]
    assert {k: frame[k] for k in ("event", "topic", "subject", "payload")} == {
        "event": "message",
        "topic": ROOM,
        "subject": "msg:new",
        "payload": {"message": "hi", "n": [1, 2]},
    }


async def test_every_frame_but_ping_is_a_json_object_routed_by_topic(channels_ws):
    alice = await channels_ws()
    bob = await channels_ws(**as_user("grace"))
    await alice.send(amber_join(ROOM))
    frames = await received(alice, 1)  # presence_state, before bob's join can overtake it
    await bob.send(amber_join(ROOM))
    await bob.send(amber_push(ROOM, "msg:new", {"message": "hi"}))
    await bob.send(amber_leave(ROOM))

    frames += await received(alice, 3)

    # Presence is not ordered with messages: bob's leave may overtake his message.
    assert sorted(f["event"] for f in frames) == [
        "message",
        "presence_diff",
        "presence_diff",
        "presence_state",
    ]
    assert all(isinstance(f, dict) and f["topic"] == ROOM for f in frames)


@config(heartbeat_interval=0.1)
async def test_the_ping_text_frame_reaches_an_amber_client_every_heartbeat(channels_ws):
    alice = await channels_ws()
    await alice.send(amber_join(ROOM))
    assert (await alice.recv())["event"] == "presence_state"

    raws = [await alice.recv_raw() for _ in range(3)]

    assert raws == ["ping", "ping", "ping"]


async def test_an_amber_client_and_a_native_client_share_a_topic(channels_ws):
    alice = await channels_ws()
    native = await channels_ws(**as_user("grace"))
    await native.join(ROOM)
    await alice.send(amber_join(ROOM))
    await native.expect("presence_diff")

    await alice.send(amber_push(ROOM, "msg:new", {"message": "from amber"}))
    (from_amber,) = await native.messages(1)
    await native.publish(ROOM, "msg:new", {"message": "from native"})

    assert from_amber["offset"] == 1
    assert from_amber["from"]["user"] == "ada"
    assert amber_sees(await received(alice, 3), ROOM) == [
        ("msg:new", {"message": "from amber"}),
        ("msg:new", {"message": "from native"}),
    ]


async def test_joining_twice_delivers_each_message_once(channels_ws):
    alice = await channels_ws()
    await alice.send(amber_join(ROOM))
    await alice.send(amber_join(ROOM))

    await alice.send(amber_push(ROOM, "msg:new", {"n": 1}))

    # presence_state follows each join, the message comes once
    assert amber_sees(await received(alice, 3), ROOM) == [("msg:new", {"n": 1})]


async def test_a_message_to_a_topic_not_joined_is_not_delivered_and_not_replied_to(channels_ws):
    alice = await channels_ws()
    bob = await channels_ws(**as_user("grace"))
    await bob.send(amber_join(ROOM))
    await received(bob, 1)

    await alice.send(amber_push(ROOM, "msg:new", {"message": "sneaky"}))

    frames = await received(alice, 1)
    assert await received(bob) == []
    assert [f["event"] for f in frames] == ["error"]
    assert "topic" not in frames[0]  # amber.js routes nothing for it


@pytest.mark.parametrize("text", ['{"event":"subscribe","topic":"chat_room:123"}', "pong"])
async def test_a_frame_amber_s_server_would_ignore_does_not_close_the_connection(channels_ws, text):
    alice = await channels_ws()

    await alice.send(text)
    await alice.send(amber_join(ROOM))
    await alice.send(amber_push(ROOM, "msg:new", {"n": 1}))

    frames = await received(alice, 3)
    assert [f["event"] for f in frames] == ["error", "presence_state", "message"]
