"""Join admission: past ``join_rate`` a join is answered ``unavailable`` with ``retry_after``
(ms), each refused join given a later slot; the Python client and js/client.js (in Node)
wait that long, with jitter, and join again, first joins included."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import jupyter_channels as jc

from ..channels_fixture import CHANNELS, as_user
from ..support import await_until
from .test_rejoin import JsSubscriber

TOPIC = "chat:admitted"
#: One join now, the next ones a slot of 1 / rate = 2 s apart.
ADMISSION = {"join_rate": 0.5, "join_burst": 1}


@pytest.fixture
def channels_config() -> dict[str, Any]:
    return {"channels": dict(CHANNELS), **ADMISSION}


async def test_joins_past_the_rate_are_told_to_come_back_each_at_a_later_slot(channels_ws):
    first = await channels_ws()
    await first.join(TOPIC)
    later = [await channels_ws(**as_user(user)) for user in ("grace", "alan")]

    replies = [await client.request({"event": "join", "topic": TOPIC}) for client in later]

    responses = [reply["payload"]["response"] for reply in replies]
    assert [reply["payload"]["status"] for reply in replies] == ["error", "error"]
    assert [r["reason"] for r in responses] == ["unavailable", "unavailable"]
    waits = [r["retry_after"] for r in responses]
    assert all(isinstance(w, int) and w > 0 for w in waits), waits
    assert waits[1] > waits[0]  # spread out, not all back at once
    await later[0].silent()  # refused before anything: not subscribed, no presence


async def test_the_python_client_waits_and_joins_a_first_join_past_the_rate(
    server_url, server_token, channels_app
):
    hub = channels_app.hub
    async with (
        jc.aconnect(server_url, server_token) as first,
        jc.aconnect(server_url, server_token) as second,
    ):
        await first.join(TOPIC)
        refused = hub.joins_refused

        room = await second.join(TOPIC)

        assert hub.joins_refused > refused  # it was turned away at least once
        assert room.joined
        assert room.state == "joined"
        await first.subscriptions[TOPIC].send("text", {"n": 1})
        await await_until(lambda: [m.payload for m in room.messages] == [{"n": 1}])


async def test_the_js_client_waits_and_joins_a_first_join_past_the_rate(
    server_url, server_token, channels_app
):
    hub = channels_app.hub
    async with jc.aconnect(server_url, server_token) as first:
        await first.join(TOPIC)
        ws_url = server_url.replace("http://", "ws://", 1) + "api/channels/websocket"
        subscriber = JsSubscriber(SimpleNamespace(ws_url=ws_url, token=server_token), TOPIC)
        try:
            await await_until(lambda: "joined" in subscriber.states(), timeout=30)
            states = subscriber.states()
            assert states[: states.index("joined")] == ["retrying"] * states.index("joined")
            assert {"state": "retrying", "reason": "unavailable"} in subscriber.events
            assert hub.joins_refused >= 1
            await first.subscriptions[TOPIC].send("text", {"n": 1})
            await await_until(lambda: subscriber.offsets() == [1])
        finally:
            subscriber.stop()
