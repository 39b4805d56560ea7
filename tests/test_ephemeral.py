"""Ephemeral messages (``"ephemeral": true``, the ``typing`` subject): fanned out to the
topic's subscribers of the moment with ``"offset": null``, acked without an offset,
never stored; the same limits and permissions as any message. On every host, and across
two services sharing one Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .channels_fixture import as_user
from .service_support import SpawnedService, started_together
from .support import config, error_reason

pytestmark = pytest.mark.on_every_host


def typing(topic: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": "message",
        "topic": topic,
        "subject": "typing",
        "payload": {},
        "ephemeral": True,
        **extra,
    }


async def test_an_ephemeral_message_reaches_every_subscriber_with_no_offset(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    grace = await channels_ws(**as_user("grace"))
    await ada.join("chat:typing")
    await grace.join("chat:typing")

    reply = await ada.request(typing("chat:typing"))
    assert reply["payload"] == {"status": "ok", "response": {}}
    for client in (grace, ada):
        [frame] = await client.messages(1, "chat:typing")
        assert frame["offset"] is None
        assert frame["ephemeral"] is True
        assert (frame["subject"], frame["payload"]) == ("typing", {})
        assert frame["from"]["user"] == "ada"
        assert isinstance(frame["ts"], int)


async def test_an_ephemeral_message_is_never_stored(channels_ws, channels_fetch):
    ada = await channels_ws(**as_user("ada"))
    await ada.join("chat:unstored")
    for _ in range(3):
        assert (await ada.request(typing("chat:unstored")))["payload"]["status"] == "ok"
    await ada.messages(3, "chat:unstored")
    assert await ada.publish("chat:unstored", "text", {"text": "stored"}) == 1

    late = await channels_ws(**as_user("grace"))
    joined = await late.join("chat:unstored", history=10)
    assert joined["offset"] == 1
    assert [m["subject"] for m in joined["messages"]] == ["text"]
    response = await channels_fetch("topics", "chat:unstored", "messages")
    body = json.loads(response.body)
    assert [m["offset"] for m in body["messages"]] == [1]
    assert body["offset"] == 1


async def test_a_subscriber_that_joins_later_gets_no_earlier_ephemeral_message(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    await ada.join("chat:gone")
    await ada.request(typing("chat:gone"))
    grace = await channels_ws(**as_user("grace"))
    await grace.join("chat:gone")
    assert await grace.publish("chat:gone") == 1
    [frame] = await grace.messages(1, "chat:gone")
    assert frame["offset"] == 1


async def test_ephemeral_must_be_true_or_false(channels_ws):
    ada = await channels_ws()
    await ada.join("chat:flag")
    reply = await ada.request(typing("chat:flag", ephemeral="yes"))
    assert error_reason(reply) == "invalid_message"


@config(max_message_size=1000)
async def test_an_ephemeral_message_over_max_message_size_is_refused(channels_ws):
    ada = await channels_ws()
    await ada.join("chat:big")
    frame = typing("chat:big")
    frame["payload"] = {"x": "x" * 2000}
    reply = await ada.request(frame)
    assert error_reason(reply) == "too_large"


@config(rate_limit=1, rate_burst=2)
async def test_ephemeral_messages_count_against_the_rate_limit(channels_ws):
    ada = await channels_ws()
    await ada.join("chat:rate")
    reasons = [error_reason(r) if r["payload"]["status"] == "error" else "ok"
               for r in [await ada.request(typing("chat:rate")) for _ in range(4)]]  # fmt: skip
    assert "rate_limited" in reasons


@pytest.mark.parametrize(
    "channels_config",
    [{"permissions": [{"topic": "*", "join": "*", "send": "@teachers"}], "presence_interval": 0}],
    ids=["teachers-send"],
)
async def test_an_ephemeral_message_needs_the_send_permission(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    grace = await channels_ws(**as_user("grace"))
    await ada.join("chat:perm")
    await grace.join("chat:perm")
    assert error_reason(await ada.request(typing("chat:perm"))) == "unauthorized"
    assert (await grace.request(typing("chat:perm")))["payload"]["status"] == "ok"
    [frame] = await ada.messages(1, "chat:perm")
    assert frame["from"]["user"] == "grace"


async def test_a_channel_may_refuse_ephemeral_messages(channels_ws):
    """``handle_message`` runs for ephemeral messages: a read-only channel refuses them."""
    ada = await channels_ws()
    await ada.join("readonly:typing")
    reply = await ada.request(typing("readonly:typing"))
    assert reply["payload"]["status"] == "error"


# -- across servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(redis_server, tmp_path_factory):
    """Two services on the session's Redis, started together."""
    redis_server.client(2).flushdb()
    root = tmp_path_factory.mktemp("ephemeral-replicas")

    pair = (
        SpawnedService(root / name, broker_url=redis_server.url(2), presence_interval=0)
        for name in ("a", "b")
    )
    with started_together(*pair) as started:
        yield started


async def test_an_ephemeral_message_crosses_servers_through_redis_and_is_not_stored(replicas):
    a, b = replicas
    ada = await a.connect("ada")
    grace = await b.connect("grace")
    alan = await b.connect("alan")
    for client in (ada, grace, alan):
        await client.join("chat:replicated-typing")

    reply = await ada.request(typing("chat:replicated-typing"))
    assert reply["payload"] == {"status": "ok", "response": {}}
    for client in (grace, alan, ada):
        [frame] = await client.messages(1, "chat:replicated-typing")
        assert (frame["offset"], frame["ephemeral"]) == (None, True)
        assert frame["from"]["user"] == "ada"
    # Delivered once on each server: the next message any of them gets is the stored one.
    assert await grace.publish("chat:replicated-typing") == 1
    for client in (grace, alan, ada):
        [frame] = await client.messages(1, "chat:replicated-typing")
        assert frame["offset"] == 1
    assert b.rest("GET", "api/channels/topics/chat:replicated-typing/messages")["offset"] == 1
