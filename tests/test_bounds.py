"""What one user can make a server hold or wait for: join payloads, connections,
REST posts, topic listings and hooks that will not stop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_channels import Channel

from .channels_fixture import CHANNELS, as_user
from .support import error_reason

_RELEASE: dict[str, asyncio.Event] = {}


class Stubborn(Channel):
    """``handle_message`` swallows its cancellation and goes on until the test releases it."""

    async def handle_message(self, client, message):
        release = _RELEASE.setdefault("stubborn", asyncio.Event())
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation: a badly written hook


def bounds(**traits: Any) -> pytest.MarkDecorator:
    channels = {**CHANNELS, "stubborn:*": "tests.test_bounds:Stubborn"}
    label = ",".join(f"{key}={value}" for key, value in traits.items())
    return pytest.mark.parametrize(
        "channels_config", [{"channels": channels, **traits}], ids=[label]
    )


# -- join payloads ------------------------------------------------------------------------------


@bounds(max_join_payload_size=1000)
async def test_a_join_payload_over_max_join_payload_size_is_refused_with_too_large(channels_ws):
    client = await channels_ws()

    reply = await client.request(
        {"event": "join", "topic": "chat:big", "ref": "j", "payload": {"blob": "x" * 2000}}
    )

    assert error_reason(reply) == "too_large"
    assert "max_join_payload_size" in reply["payload"]["response"]["detail"]
    # Nothing was joined, and the connection carries on.
    await client.join("chat:big", payload={"blob": "x" * 900})
    assert await client.publish("chat:big") == 1


async def test_join_payloads_are_bounded_at_64_kib_by_default(channels_ws):
    client = await channels_ws()

    refused = await client.request(
        {"event": "join", "topic": "chat:a", "ref": "a", "payload": {"b": "x" * 70_000}}
    )
    accepted = await client.join("chat:b", payload={"b": "x" * 60_000})

    assert error_reason(refused) == "too_large"
    assert accepted["offset"] == 0


# -- connections per user -----------------------------------------------------------------------


@bounds(max_connections_per_user=3)
async def test_a_users_connection_past_max_connections_per_user_is_closed_with_4029(
    channels_ws,
):
    ada = [await channels_ws(**as_user("ada")) for _ in range(3)]
    extra = await channels_ws(**as_user("ada"))

    await extra.closed()
    assert extra.conn.close_code == 4029
    assert "max_connections_per_user=3" in extra.conn.close_reason
    # The user's other connections, and other users, carry on.
    await ada[0].join("chat:x")
    bob = await channels_ws(**as_user("grace"))
    await bob.join("chat:x")


@bounds(max_connections_per_user=2)
async def test_a_closed_connection_gives_its_place_back(channels_ws):
    first = await channels_ws(**as_user("ada"))
    await channels_ws(**as_user("ada"))
    first.close()
    await first.closed()

    for _ in range(50):
        again = await channels_ws(**as_user("ada"))
        try:
            reply = await again.request({"event": "heartbeat", "ref": "h"}, timeout=2)
        except ConnectionError:
            await asyncio.sleep(0.1)  # the server has not seen the close yet
            continue
        break
    assert reply["payload"]["status"] == "ok"


# -- REST ---------------------------------------------------------------------------------------


async def _post(jp_fetch, topic: str, user: str = "ada") -> tuple[int, Any]:
    try:
        response = await jp_fetch(
            "api", "channels", "topics", topic, "messages", method="POST",
            body=json.dumps({"subject": "text", "payload": {}}), **as_user(user),
        )  # fmt: skip
    except HTTPClientError as e:
        body = e.response.body if e.response is not None else b"null"
        return e.code, json.loads(body)
    return response.code, json.loads(response.body)


@bounds(rate_limit=1, rate_burst=3)
async def test_rest_posts_count_against_the_users_rate_limit(jp_fetch):
    answers = [await _post(jp_fetch, "chat:rest") for _ in range(5)]

    assert [code for code, _ in answers[:3]] == [200, 200, 200]
    assert answers[3] == (429, {"reason": "rate_limited", "detail": "rate limit exceeded"})
    # Another user has a bucket of their own.
    assert (await _post(jp_fetch, "chat:rest", "grace"))[0] == 200


async def test_get_topics_pages_with_a_next_link(jp_fetch):
    for i in range(5):
        assert (await _post(jp_fetch, f"chat:page{i}"))[0] == 200

    seen: list[str] = []
    path = ["api", "channels", "topics"]
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        response = await jp_fetch(*path, params=params)
        seen += [t["topic"] for t in json.loads(response.body)]
        pages += 1
        link = response.headers.get("Link")
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        query = link[link.index("?") + 1 : link.index(">")]
        params = dict(part.split("=") for part in query.split("&"))
        params["after"] = params["after"].replace("%3A", ":")

    assert seen == [f"chat:page{i}" for i in range(5)]
    assert pages == 3


# -- hooks that will not stop -------------------------------------------------------------------


@bounds(hook_timeout=0.2)
async def test_hook_timeout_holds_for_a_hook_that_swallows_its_cancellation(channels_ws):
    _RELEASE["stubborn"] = asyncio.Event()
    client = await channels_ws()
    await client.join("stubborn:1")

    try:
        reply = await client.request(
            {"event": "message", "topic": "stubborn:1", "subject": "s", "ref": "m"}
        )
    finally:
        _RELEASE["stubborn"].set()

    assert error_reason(reply) == "timeout"
    await client.join("chat:after")
    assert await client.publish("chat:after") == 1


# -- stored topics ------------------------------------------------------------------------------


@bounds(max_topics=3)
async def test_a_new_topic_past_max_topics_is_refused_and_known_topics_carry_on(
    jp_fetch, channels_ws
):
    for i in range(3):
        assert (await _post(jp_fetch, f"chat:t{i}"))[0] == 200

    over_rest = await _post(jp_fetch, "chat:t3")
    client = await channels_ws()
    await client.join("chat:t4")
    over_ws = await client.request(
        {"event": "message", "topic": "chat:t4", "subject": "text", "payload": {}}
    )

    assert over_rest == (
        409,
        {"reason": "too_many_topics", "detail": "the server holds max_topics (3) topics"},
    )
    assert error_reason(over_ws) == "too_many_topics"
    await client.join("chat:t0")
    assert await client.publish("chat:t0") == 2


async def test_topics_everyone_left_are_pruned_from_the_hub_and_the_broker(
    channels_ws, channels_app
):
    hub = channels_app.hub
    client = await channels_ws()
    for i in range(50):
        await client.join(f"chat:gone{i}")
        await client.publish(f"chat:gone{i}")
    for i in range(50):
        reply = await client.request({"event": "leave", "topic": f"chat:gone{i}"})
        assert reply["payload"]["status"] == "ok"
    other = await channels_ws()
    await other.join("chat:stays")

    assert set(hub.topics) == {"chat:stays"}
    broker_topics = getattr(hub.broker, "_topics", None) or getattr(hub.broker, "_subscribed", {})
    assert set(broker_topics) == {"chat:stays"}
