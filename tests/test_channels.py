"""Custom channels registered through config: hooks, actions, routing and registration.

The channels live in ``tests/channels_fixture.py``. The tests run on every host
(tests/hosts.py), except those that read the hook calls recorded in
``channels_fixture.CALLS``, which only a server in this process records.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_channels import Channel, RebroadcastChannel
from jupyter_channels.app import ENTRY_POINT_GROUP, ChannelsApp, load_channel_class

from . import channels_fixture
from .channels_fixture import CALLS, CHANNELS, as_user
from .support import config, error_reason

FIXTURE = "tests.channels_fixture"

pytestmark = pytest.mark.on_every_host
records_calls = pytest.mark.extension_only("reads CALLS, recorded by a server in this process")


@pytest.fixture
def channels_config() -> dict[str, Any]:
    return {"channels": dict(CHANNELS), "default_channel": f"{FIXTURE}:ServedAnywhere"}


@pytest.fixture(autouse=True)
def _no_calls():
    CALLS.clear()
    yield
    CALLS.clear()


async def conn_id(client, topic: str, user: str = "ada", **extra: Any) -> str:
    """Join ``topic`` and return this connection's id (from ``presence_state``)."""
    reply = await client.request({"event": "join", "topic": topic, **extra})
    assert reply["payload"]["status"] == "ok", reply
    state = await client.expect("presence_state", topic=topic)
    return state["payload"][user]["metas"][-1]["id"]


async def wait_for_calls(n: int) -> None:
    """Hooks of a dropped connection run after the close; wait until ``n`` were recorded."""
    for _ in range(500):
        if len(CALLS) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} hook calls, got {CALLS}")


def subjects(frames: list[Any]) -> list[str]:
    return [f["subject"] for f in frames if f.get("event") == "message"]


# -- handle_joined ------------------------------------------------------------------------------


@records_calls
async def test_a_join_rejected_by_the_channel_gets_its_detail_and_subscribes_nothing(channels_ws):
    member = await channels_ws(**as_user("grace"))
    await member.join("invite:club", payload={"invite": "ok"})
    await member.drain()
    ada = await channels_ws()

    await ada.send({"event": "join", "topic": "invite:club", "ref": "r", "payload": {"invite": 0}})

    assert await ada.recv() == {
        "event": "reply",
        "topic": "invite:club",
        "ref": "r",
        "payload": {
            "status": "error",
            "response": {"reason": "join_rejected", "detail": "invite required"},
        },
    }
    await ada.silent()
    await member.silent()  # no presence_diff, no user_joined
    await member.publish("invite:club")
    await ada.silent()
    reply = await ada.request({"event": "message", "topic": "invite:club", "subject": "text"})
    assert error_reason(reply) == "not_joined"
    assert CALLS == [("joined", "invite:club", "grace")]


@records_calls
async def test_handle_joined_receives_the_join_payload_as_message_payload(channels_ws):
    ada = await channels_ws()

    await ada.join("invite:club", payload={"invite": "ok"})

    assert CALLS == [("joined", "invite:club", "ada")]


async def test_a_broadcast_from_handle_joined_reaches_the_joiner_after_its_reply_and_others(
    channels_ws,
):
    grace = await channels_ws(**as_user("grace"))
    await grace.join("invite:club", payload={"invite": "ok"})
    await grace.drain()
    ada = await channels_ws()

    await ada.send(
        {"event": "join", "topic": "invite:club", "ref": "j", "payload": {"invite": "ok"}}
    )

    frames = await ada.drain(3)
    assert [(f["event"], f.get("subject")) for f in frames] == [
        ("reply", None),
        ("message", "user_joined"),
        ("presence_state", None),
    ]
    user_joined = frames[1]
    assert user_joined["payload"] == {"name": "Ada Lovelace"}
    assert user_joined["from"]["user"] == "ada"
    assert user_joined["offset"] == frames[0]["payload"]["response"]["offset"] + 1
    (seen,) = await grace.messages(1)
    assert seen == user_joined


@records_calls
async def test_joining_a_joined_topic_again_does_not_run_handle_joined_again(channels_ws):
    ada = await channels_ws()
    await ada.join("invite:club", payload={"invite": "ok"})

    again = await ada.join("invite:club", payload={"invite": "ok"})

    assert again["offset"] == 1
    assert CALLS == [("joined", "invite:club", "ada")]


# -- handle_message -----------------------------------------------------------------------------


async def test_an_exception_in_handle_message_gives_internal_error_and_everything_carries_on(
    channels_ws,
):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await ada.join("boom:1")
    await grace.join("accept:elsewhere")

    await ada.send({"event": "message", "topic": "boom:1", "subject": "text", "ref": "x"})

    assert await ada.recv() == {
        "event": "reply",
        "topic": "boom:1",
        "ref": "x",
        "payload": {
            "status": "error",
            "response": {
                "reason": "internal_error",
                "detail": "the channel failed to handle this",
            },
        },
    }
    assert await grace.publish("accept:elsewhere") == 1  # another client, another topic
    await ada.join("accept:other")
    assert await ada.publish("accept:other") == 1  # the same connection
    assert await ada.publish("boom:1", "ok") == 1  # the same channel


async def test_a_dict_returned_by_handle_message_is_merged_into_the_ok_reply(channels_ws):
    ada = await channels_ws()
    await ada.join("accept:x")
    await ada.publish("accept:x")

    reply = await ada.request(
        {"event": "message", "topic": "accept:x", "subject": "text", "payload": {}}
    )

    assert reply["payload"] == {
        "status": "ok",
        "response": {"offset": 2, "accepted": True, "subject": "text"},
    }


async def test_handle_message_that_publishes_nothing_gets_an_empty_ok_reply(channels_ws):
    ada = await channels_ws()
    await ada.join("silent:x")

    reply = await ada.request({"event": "message", "topic": "silent:x", "subject": "text"})

    assert reply["payload"] == {"status": "ok", "response": {}}
    await ada.silent()


@records_calls
async def test_plain_function_hooks_work_like_coroutines(channels_ws):
    ada = await channels_ws()

    joined = await ada.join("plain:x")
    reply = await ada.request(
        {"event": "message", "topic": "plain:x", "subject": "text", "payload": {"n": 1}}
    )
    await ada.request({"event": "leave", "topic": "plain:x"})

    assert joined["offset"] == 0
    assert reply["payload"] == {"status": "ok", "response": {"offset": 2, "plain": True}}
    frames = [f for f in await ada.drain(2) if f["event"] == "message"]
    assert [(f["subject"], f["offset"]) for f in frames] == [("user_joined", 1), ("text", 2)]
    assert CALLS == [("joined", "plain:x", "ada"), ("leave", "plain:x", "ada")]


# -- handle_leave -------------------------------------------------------------------------------


@records_calls
async def test_handle_leave_runs_on_an_explicit_leave(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await ada.join("invite:club", payload={"invite": "ok"})
    await grace.join("invite:club", payload={"invite": "ok"})
    await grace.drain()

    reply = await ada.request({"event": "leave", "topic": "invite:club"})

    assert reply["payload"] == {"status": "ok", "response": {}}
    (left,) = await grace.messages(1)
    assert (left["subject"], left["payload"]) == ("user_left", {"name": "Ada Lovelace"})
    assert CALLS[-1] == ("leave", "invite:club", "ada")
    assert "user_left" not in subjects(await ada.drain())


@records_calls
async def test_handle_leave_runs_for_every_topic_when_the_connection_drops(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    for topic in ("invite:a", "invite:b"):
        await ada.join(topic, payload={"invite": "ok"})
        await grace.join(topic, payload={"invite": "ok"})
    await grace.drain()

    ada.close()

    left = await grace.messages(2)
    assert sorted((f["topic"], f["subject"], f["from"]["user"]) for f in left) == [
        ("invite:a", "user_left", "ada"),
        ("invite:b", "user_left", "ada"),
    ]
    leaves = sorted(call for call in CALLS if call[0] == "leave")
    assert leaves == [("leave", "invite:a", "ada"), ("leave", "invite:b", "ada")]


async def test_handle_leave_runs_when_the_server_disconnects_the_client(channels_ws, channels_app):
    ada = await channels_ws()
    await ada.join("invite:club", payload={"invite": "ok"})
    (client,) = channels_app.hub.clients.values()

    client.disconnect("go away")

    await wait_for_calls(2)
    assert CALLS == [("joined", "invite:club", "ada"), ("leave", "invite:club", "ada")]


@records_calls
async def test_handle_leave_runs_when_the_connection_drops_during_handle_joined(channels_ws):
    ada = await channels_ws()
    await ada.send({"event": "join", "topic": "slowjoin:x", "payload": {"wait": 0.5}, "ref": "j"})
    await asyncio.sleep(0.1)  # handle_joined is running

    ada.close()

    await wait_for_calls(2)
    assert CALLS == [("joined", "slowjoin:x", "ada"), ("leave", "slowjoin:x", "ada")]


async def test_a_task_started_in_a_hook_publishes_as_the_server_after_the_hook(channels_ws):
    ada = await channels_ws()
    await ada.join("tick:x")

    (tick,) = await ada.messages(1, "tick:x")

    assert tick["subject"] == "tick"
    assert tick["topic"] == "tick:x"
    assert tick["from"] == {"id": "server", "user": "server", "name": "server", "kind": "server"}


async def test_a_failing_hook_answers_a_message_without_ref_with_an_error_event(channels_ws):
    ada = await channels_ws()
    await ada.join("boom:x")
    await ada.send({"event": "message", "topic": "boom:x", "subject": "explode", "payload": {}})

    frame = await ada.expect("error")
    assert frame["payload"]["reason"] == "internal_error"
    assert "ref" not in frame


async def test_messages_sent_before_a_leave_reach_the_sender_first(channels_ws):
    ada = await channels_ws()
    await ada.join("slowjoin:y", payload={"wait": 0})
    for i in range(5):
        await ada.send({"event": "message", "topic": "slowjoin:y", "subject": "n", "payload": i})
    reply = await ada.request({"event": "leave", "topic": "slowjoin:y"})
    assert reply["payload"]["status"] == "ok"
    assert [m["payload"] for m in await ada.messages(5)] == [0, 1, 2, 3, 4]


@records_calls
async def test_handle_leave_does_not_run_for_a_rejected_join(channels_ws):
    ada = await channels_ws()
    reply = await ada.request({"event": "join", "topic": "invite:club"})
    assert error_reason(reply) == "join_rejected"

    ada.close()
    other = await channels_ws(**as_user("grace"))
    await other.join("invite:club", payload={"invite": "ok"})

    assert CALLS == [("joined", "invite:club", "grace")]


# -- actions ------------------------------------------------------------------------------------


async def test_broadcast_from_reaches_everyone_but_the_sender(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    alan = await channels_ws(**as_user("alan"))
    ada_id = await conn_id(ada, "others:x")
    await grace.join("others:x")
    await alan.join("others:x")

    offset = await ada.publish("others:x", "text", {"hi": 1})

    (to_grace,) = await grace.messages(1)
    (to_alan,) = await alan.messages(1)
    assert to_grace == to_alan
    assert to_grace["offset"] == offset == 1
    assert to_grace["from"]["id"] == ada_id
    assert subjects(await ada.drain()) == []
    history = await ada.request({"event": "history", "topic": "others:x"})
    assert [m["offset"] for m in history["payload"]["response"]["messages"]] == [1]


async def test_broadcast_from_in_handle_joined_reaches_everyone_but_the_joiner(channels_ws):
    ada = await channels_ws()
    await ada.join("welcome:x")
    grace = await channels_ws(**as_user("grace"))

    await grace.join("welcome:x")

    (arrived,) = await ada.messages(1)
    assert arrived["subject"] == "arrived"
    assert arrived["payload"] == {"name": "Grace Hopper"}
    assert await grace.publish("welcome:x") == 3
    assert subjects(await grace.messages(1)) == ["text"]


async def test_push_reaches_only_the_client_with_a_null_offset_outside_history(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    ada_id = await conn_id(ada, "push:x")
    await grace.join("push:x")

    reply = await ada.request(
        {"event": "message", "topic": "push:x", "subject": "ping", "payload": {"n": 1}}
    )

    assert reply["payload"] == {"status": "ok", "response": {}}
    (pong,) = await ada.messages(1)
    ts = pong.pop("ts")
    assert isinstance(ts, int)
    assert pong == {
        "event": "message",
        "topic": "push:x",
        "subject": "pong",
        "payload": {"n": 1},
        "offset": None,
        "from": {"id": ada_id, "user": "ada", "name": "Ada Lovelace", "kind": "browser"},
    }
    await grace.silent()
    history = await ada.request({"event": "history", "topic": "push:x"})
    assert history["payload"]["response"] == {"messages": []}


@records_calls
async def test_kick_sends_a_close_frame_then_runs_handle_leave(channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await ada.join("kick:x")
    await grace.join("kick:x")
    await grace.drain()

    await ada.send({"event": "message", "topic": "kick:x", "subject": "kick me", "ref": "k"})

    close = await ada.expect("close")
    assert close == {
        "event": "close",
        "topic": "kick:x",
        "payload": {"reason": "kicked by the channel"},
    }
    assert (await ada.expect("reply", ref="k"))["payload"]["status"] == "ok"
    to_grace = await grace.drain(2)
    assert [f["event"] for f in to_grace] == ["presence_diff", "message"]
    assert list(to_grace[0]["payload"]["leaves"]) == ["ada"]
    assert to_grace[1]["subject"] == "user_left"
    assert CALLS == [("leave", "kick:x", "ada")]
    assert subjects(await ada.drain()) == []
    reply = await ada.request({"event": "message", "topic": "kick:x", "subject": "text"})
    assert error_reason(reply) == "not_joined"
    await ada.join("kick:x")  # a kick ends the subscription, not the connection


# -- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "served_by"),
    [
        ("route:vip:1", "ServedExact"),
        ("route:vip:2", "ServedLongerPrefix"),
        ("route:vip:", "ServedLongerPrefix"),
        ("route:vip", "ServedPrefix"),
        ("route:1", "ServedPrefix"),
        ("routes", "ServedAnywhere"),
        ("chat:lobby", "ServedAnywhere"),
    ],
)
async def test_the_most_specific_pattern_serves_a_topic(channels_ws, topic, served_by):
    ada = await channels_ws()
    await ada.join(topic)

    reply = await ada.request({"event": "message", "topic": topic, "subject": "text"})

    assert reply["payload"]["response"] == {"served_by": served_by}


async def test_configured_channels_are_added_to_the_default_channel(channels_app):
    router = channels_app.hub.router

    assert set(router.patterns()) == {"*", *CHANNELS}
    assert type(router.match("anything")).__name__ == "ServedAnywhere"


@config(default_channel=None)
async def test_a_default_channel_of_none_removes_the_catch_all(channels_ws, channels_app):
    ada = await channels_ws()

    reply = await ada.request({"event": "join", "topic": "chat:lobby"})

    assert error_reason(reply) == "unmatched_topic"
    assert "*" not in set(channels_app.hub.router.patterns())
    await ada.join("route:1")


@config(channels={"*": f"{FIXTURE}:ServedExact"})
async def test_a_configured_star_pattern_replaces_the_default_channel(channels_ws):
    ada = await channels_ws()
    await ada.join("chat:lobby")

    reply = await ada.request({"event": "message", "topic": "chat:lobby", "subject": "text"})

    assert reply["payload"]["response"] == {"served_by": "ServedExact"}


async def test_the_builtin_default_channel_rebroadcasts_to_every_subscriber():
    app = ChannelsApp()

    assert app.channel_specs() == {"*": "jupyter_channels.channel:RebroadcastChannel"}
    assert load_channel_class(app.channel_specs()["*"]) is RebroadcastChannel


# -- registration -------------------------------------------------------------------------------


@pytest.fixture
def entry_point_channels(monkeypatch):
    """The entry-point group ``jupyter_channels.channels`` holds two channels."""
    points = [
        EntryPoint("route:*", f"{FIXTURE}:ServedLongerPrefix", ENTRY_POINT_GROUP),
        EntryPoint("plugin:*", f"{FIXTURE}:ServedExact", ENTRY_POINT_GROUP),
    ]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return points if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr("jupyter_channels.settings.entry_points", entry_points)


def test_channel_specs_rank_config_over_entry_points_over_the_default(entry_point_channels):
    app = ChannelsApp(
        channels={"route:*": f"{FIXTURE}:ServedPrefix"}, default_channel=f"{FIXTURE}:Silent"
    )

    assert app.channel_specs() == {
        "*": f"{FIXTURE}:Silent",
        "route:*": f"{FIXTURE}:ServedPrefix",
        "plugin:*": f"{FIXTURE}:ServedExact",
    }


async def test_channels_from_the_entry_point_group_serve_their_topics(
    entry_point_channels, channels_ws
):
    ada = await channels_ws()
    await ada.join("plugin:1")

    plugin = await ada.request({"event": "message", "topic": "plugin:1", "subject": "text"})
    await ada.join("route:1")
    route = await ada.request({"event": "message", "topic": "route:1", "subject": "text"})

    assert plugin["payload"]["response"] == {"served_by": "ServedExact"}
    assert route["payload"]["response"] == {"served_by": "ServedPrefix"}  # config wins


@pytest.mark.parametrize(
    "spec",
    [f"{FIXTURE}:InviteOnly", f"{FIXTURE}.InviteOnly", channels_fixture.InviteOnly],
    ids=["colon", "dotted", "class"],
)
def test_load_channel_class_accepts_module_colon_class_dotted_paths_and_classes(spec):
    assert load_channel_class(spec) is channels_fixture.InviteOnly


@pytest.mark.parametrize(
    "spec", [f"{FIXTURE}:NotAChannel", f"{FIXTURE}:CALLS", object], ids=["class", "list", "object"]
)
def test_load_channel_class_refuses_what_is_not_a_channel_subclass(spec):
    with pytest.raises(TypeError, match=r"not a jupyter_channels\.Channel subclass"):
        load_channel_class(spec)


def test_load_channel_class_refuses_a_missing_class():
    with pytest.raises(ImportError):
        load_channel_class(f"{FIXTURE}:Missing")


@pytest.mark.parametrize("pattern", ["bad topic:*", "", "a*b", "**"], ids=repr)
def test_a_channels_pattern_that_is_not_a_topic_prefix_or_star_is_refused(pattern):
    with pytest.raises(TraitError, match="invalid pattern"):
        ChannelsApp(channels={pattern: f"{FIXTURE}:InviteOnly"})


def test_a_channel_subclass_without_handle_message_refuses_messages():
    class Mute(Channel):
        pass

    with pytest.raises(NotImplementedError):
        Mute(None, "*").handle_message(None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["amqp://localhost", "kafka://", "nats://x:4222"])
def test_an_unknown_broker_url_scheme_is_refused_with_a_clear_message(url):
    with pytest.raises(TraitError, match="unknown scheme") as e:
        ChannelsApp(broker_url=url)
    assert "Leave broker_url empty for the embedded broker" in str(e.value)


def test_an_empty_broker_url_selects_the_embedded_broker():
    assert ChannelsApp(broker_url="").broker_url == ""
