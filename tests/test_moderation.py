"""Edit, delete and mute on a real server: the server checks who may send them (the
author of the message, or a ``moderate`` principal of the topic) and their shape before
the channel sees them; a muted user is refused until the mute ends.

The test users: ada (group ``red``), grace (group ``teachers``: the moderator), alan.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from .channels_fixture import CHANNELS, USER_HEADER, as_user
from .hosts import config_file, each_spawned_host
from .service_support import SpawnedService, started_together, token_of
from .support import RECV_TIMEOUT, REPO_ROOT, SpawnedServer

pytestmark = pytest.mark.on_every_host

RULES = [
    {"topic": "announce:*", "join": "*", "send": "*"},
    {"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"},
]
TRAITS = {"channels": dict(CHANNELS), "presence_interval": 0, "permissions": RULES}


@pytest.fixture
def channels_config():
    return dict(TRAITS)


def frame(topic: str, subject: str, payload: Any, **extra: Any) -> dict[str, Any]:
    return {"event": "message", "topic": topic, "subject": subject, "payload": payload, **extra}


async def sent(client, topic: str, subject: str, payload: Any, **extra: Any) -> dict:
    """Send a message and return its reply's payload (``status``, ``response``)."""
    return (await client.request(frame(topic, subject, payload, **extra)))["payload"]


async def refused(client, topic: str, subject: str, payload: Any, **extra: Any) -> tuple[str, str]:
    reply = await client.request(frame(topic, subject, payload, **extra))
    assert reply["payload"]["status"] == "error", reply
    response = reply["payload"]["response"]
    return response["reason"], response["detail"]


async def users(channels_ws, topic: str, *names: str):
    clients = [await channels_ws(**as_user(name)) for name in names]
    for client in clients:
        await client.join(topic)
    return clients


# -- edit and delete -------------------------------------------------------------------------------


async def test_the_author_edits_and_deletes_their_message_and_others_see_both(channels_ws):
    ada, alan = await users(channels_ws, "chat:own", "ada", "alan")
    assert await ada.publish("chat:own", "text", {"text": "helo"}) == 1
    assert await ada.publish("chat:own", "edit", {"offset": 1, "text": "hello"}) == 2
    assert await ada.publish("chat:own", "delete", {"offset": 1}) == 3
    seen = await alan.messages(3, "chat:own")
    assert [(m["subject"], m["payload"], m["from"]["user"]) for m in seen] == [
        ("text", {"text": "helo"}, "ada"),
        ("edit", {"offset": 1, "text": "hello"}, "ada"),
        ("delete", {"offset": 1}, "ada"),
    ]


async def test_another_user_may_not_edit_or_delete_a_message(channels_ws):
    ada, alan = await users(channels_ws, "chat:theirs", "ada", "alan")
    await ada.publish("chat:theirs", "text", {"text": "mine"})
    reason, detail = await refused(alan, "chat:theirs", "edit", {"offset": 1, "text": "yours"})
    assert reason == "unauthorized"
    assert "only its author (ada) or a moderator may edit message 1" in detail
    assert "moderate '@teachers'" in detail
    reason, _ = await refused(alan, "chat:theirs", "delete", {"offset": 1})
    assert reason == "unauthorized"
    # Nothing was stored: the next message is 2.
    assert await ada.publish("chat:theirs", "text", {"text": "next"}) == 2


async def test_a_moderator_edits_and_deletes_anyones_message(channels_ws):
    ada, grace = await users(channels_ws, "chat:moderated", "ada", "grace")
    await ada.publish("chat:moderated", "text", {"text": "rude"})
    assert await grace.publish("chat:moderated", "edit", {"offset": 1, "text": "[edited]"}) == 2
    assert await grace.publish("chat:moderated", "delete", {"offset": 1}) == 3
    seen = await ada.messages(3, "chat:moderated")
    assert [(m["subject"], m["from"]["user"]) for m in seen[1:]] == [
        ("edit", "grace"),
        ("delete", "grace"),
    ]


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("edit", {"offset": 1}),
        ("edit", {"offset": 1, "text": 5}),
        ("edit", {"offset": "1", "text": "x"}),
        ("edit", {"offset": True, "text": "x"}),
        ("delete", {"offset": 0}),
        ("delete", ["offset", 1]),
        ("delete", {"offset": 99}),  # no such message
        ("delete", {"offset": 2}),  # a cell, not a text message
        ("edit", {"offset": 3, "text": "x"}),  # an edit, not a text message
    ],
    ids=json.dumps,
)
async def test_a_malformed_edit_or_delete_or_one_without_a_text_target_is_invalid(
    channels_ws, subject, payload
):
    [ada] = await users(channels_ws, "chat:invalid", "ada")
    await ada.publish("chat:invalid", "text", {"text": "one"})
    await ada.publish("chat:invalid", "cell", {"source": "1 + 1"})
    await ada.publish("chat:invalid", "edit", {"offset": 1, "text": "uno"})
    reason, _ = await refused(ada, "chat:invalid", subject, payload)
    assert reason == "invalid_message"


async def test_an_edit_cannot_be_ephemeral(channels_ws):
    [ada] = await users(channels_ws, "chat:ephemeral-edit", "ada")
    await ada.publish("chat:ephemeral-edit", "text", {"text": "one"})
    reason, _ = await refused(
        ada, "chat:ephemeral-edit", "edit", {"offset": 1, "text": "x"}, ephemeral=True
    )
    assert reason == "invalid_message"


async def test_late_joiners_and_a_since_rejoin_see_the_edit_and_the_delete(channels_ws):
    [ada] = await users(channels_ws, "chat:late", "ada")
    await ada.publish("chat:late", "text", {"text": "a"})
    await ada.publish("chat:late", "text", {"text": "b"})
    await ada.publish("chat:late", "edit", {"offset": 1, "text": "A"})
    await ada.publish("chat:late", "delete", {"offset": 2})

    late = await channels_ws(**as_user("alan"))
    joined = await late.join("chat:late", history=10)
    assert [(m["subject"], m["payload"]) for m in joined["messages"]] == [
        ("text", {"text": "a"}),
        ("text", {"text": "b"}),
        ("edit", {"offset": 1, "text": "A"}),
        ("delete", {"offset": 2}),
    ]
    back = await channels_ws(**as_user("alan"))
    rejoined = await back.join("chat:late", since=2)
    assert [m["subject"] for m in rejoined["messages"]] == ["edit", "delete"]


@pytest.mark.parametrize(
    "channels_config", [{"channels": dict(CHANNELS), "presence_interval": 0}], ids=["no-rules"]
)
async def test_without_permissions_authors_edit_their_own_and_nobody_moderates(channels_ws):
    ada, grace = await users(channels_ws, "chat:open", "ada", "grace")
    await ada.publish("chat:open", "text", {"text": "one"})
    assert await ada.publish("chat:open", "edit", {"offset": 1, "text": "uno"}) == 2
    reason, detail = await refused(grace, "chat:open", "delete", {"offset": 1})
    assert reason == "unauthorized"
    assert "nobody moderates" in detail
    reason, _ = await refused(grace, "chat:open", "mute", {"user": "ada", "seconds": 60})
    assert reason == "unauthorized"


# -- mutes -----------------------------------------------------------------------------------------


async def eventually_accepted(client, topic: str) -> dict:
    """Send a text message until it is accepted (a mute ends by itself)."""
    deadline = time.monotonic() + RECV_TIMEOUT * 3
    while True:
        payload = await sent(client, topic, "text", {"text": "back"})
        if payload["status"] == "ok":
            return payload["response"]
        assert payload["response"]["reason"] == "unauthorized", payload
        assert time.monotonic() < deadline, "the mute never ended"
        await asyncio.sleep(0.1)


async def test_a_muted_user_is_refused_until_the_mute_ends(channels_ws):
    ada, grace, alan = await users(channels_ws, "chat:mute", "ada", "grace", "alan")
    assert await grace.publish("chat:mute", "mute", {"user": "alan", "seconds": 1}) == 1
    [announced] = await ada.messages(1, "chat:mute")
    assert announced["subject"] == "mute"
    assert announced["from"]["user"] == "grace"
    assert announced["payload"]["user"] == "alan"
    assert announced["payload"]["seconds"] == 1
    assert isinstance(announced["payload"]["until"], int)

    reason, detail = await refused(alan, "chat:mute", "text", {"text": "hey"})
    assert reason == "unauthorized"
    assert detail.startswith("muted in 'chat:mute' until ")
    reason, _ = await refused(alan, "chat:mute", "typing", {}, ephemeral=True)
    assert reason == "unauthorized"
    # Others are not muted, and alan is muted in this topic only.
    assert await ada.publish("chat:mute", "text", {"text": "still here"}) == 2
    await alan.join("chat:elsewhere")
    assert await alan.publish("chat:elsewhere", "text", {"text": "hi"}) == 1

    assert (await eventually_accepted(alan, "chat:mute"))["offset"] >= 3


async def test_only_moderators_mute_and_a_zero_mute_lifts_it(channels_ws):
    ada, grace = await users(channels_ws, "chat:lift", "ada", "grace")
    reason, detail = await refused(ada, "chat:lift", "mute", {"user": "grace", "seconds": 60})
    assert reason == "unauthorized"
    assert "moderate" in detail
    await grace.publish("chat:lift", "mute", {"user": "ada", "seconds": 3600})
    assert (await refused(ada, "chat:lift", "text", {"text": "x"}))[0] == "unauthorized"
    await grace.publish("chat:lift", "mute", {"user": "ada", "seconds": 0})
    assert (await sent(ada, "chat:lift", "text", {"text": "x"}))["status"] == "ok"


@pytest.mark.parametrize(
    "payload",
    [
        {"user": "ada"},
        {"user": "", "seconds": 1},
        {"user": "ada", "seconds": -1},
        {"user": "ada", "seconds": "10"},
        {"user": "ada", "seconds": True},
        "ada",
    ],
    ids=json.dumps,
)
async def test_a_malformed_mute_is_invalid(channels_ws, payload):
    [grace] = await users(channels_ws, "chat:bad-mute", "grace")
    assert (await refused(grace, "chat:bad-mute", "mute", payload))[0] == "invalid_message"


# -- REST ------------------------------------------------------------------------------------------


async def post(
    channels_fetch, topic: str, user: str, subject: str, payload: Any = None, **extra: Any
) -> tuple[int, Any]:
    """A REST POST of ``user``; its status and parsed answer."""
    body = {"subject": subject, "payload": {} if payload is None else payload, **extra}
    response = await channels_fetch(
        "topics",
        topic,
        "messages",
        method="POST",
        body=json.dumps(body),
        raise_error=False,
        **as_user(user),
    )
    return response.code, json.loads(response.body) if response.body else None


async def test_rest_posts_follow_the_same_rules(channels_fetch):
    topic = "chat:rest"
    assert await post(channels_fetch, topic, "ada", "text", {"text": "hi"}) == (200, {"offset": 1})
    code, body = await post(channels_fetch, topic, "alan", "delete", {"offset": 1})
    assert (code, body["reason"]) == (403, "unauthorized")
    code, body = await post(channels_fetch, topic, "grace", "mute", {"user": "alan", "seconds": 60})
    assert (code, body) == (200, {"offset": 2})
    code, body = await post(channels_fetch, topic, "alan", "text", {"text": "hi"})
    assert (code, body["reason"]) == (403, "unauthorized")
    assert body["detail"].startswith("muted in 'chat:rest' until ")
    code, body = await post(channels_fetch, topic, "ada", "edit", {"offset": 9, "text": "x"})
    assert (code, body["reason"]) == (400, "invalid_message")
    assert await post(channels_fetch, topic, "grace", "delete", {"offset": 1}) == (
        200,
        {"offset": 3},
    )


async def test_an_ephemeral_rest_post_reaches_the_subscribers_and_is_not_stored(
    channels_ws, channels_fetch
):
    [ada] = await users(channels_ws, "chat:rest-typing", "ada")
    answer = await post(channels_fetch, "chat:rest-typing", "grace", "typing", ephemeral=True)
    assert answer == (200, {})
    [typing] = await ada.messages(1, "chat:rest-typing")
    assert (typing["offset"], typing["ephemeral"], typing["from"]["user"]) == (None, True, "grace")
    code, body = await post(channels_fetch, "chat:rest-typing", "grace", "typing", ephemeral="yes")
    assert (code, body["reason"]) == (400, "invalid_message")
    code, body = await post(channels_fetch, "chat:rest-typing", "grace", "text", {"text": "x"})
    assert body == {"offset": 1}


# -- restarts and servers sharing Redis ------------------------------------------------------------


def service(root, history_path=None, **traits: Any) -> SpawnedService:
    """A service with the rules (and ``traits``) on ``history_path`` (default: in ``root``)."""
    config = config_file({**TRAITS, **traits})
    return SpawnedService(root, config=config, history_path=history_path)


def extension(root: Path, history_path: Path) -> SpawnedServer:
    """A ``jupyter server`` with the extension and the rules on ``history_path``, whose users
    are named by the ``X-Test-User`` header (as the in-process server's)."""
    config_dir = root / "config"
    config_dir.mkdir(parents=True)
    config = {
        "ServerApp": {"identity_provider_class": "tests.channels_fixture.HeaderUsers"},
        "ChannelsApp": {"permissions": RULES},
    }
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {"JUPYTER_CONFIG_DIR": str(config_dir), "PYTHONPATH": path}
    return SpawnedServer(root, history_path, env=env)


async def connect_as(server: SpawnedServer | SpawnedService, user: str):
    if isinstance(server, SpawnedService):
        return await server.connect(user)
    return await server.connect(**{USER_HEADER: user})


@each_spawned_host
async def test_a_mute_holds_after_a_restart_with_the_same_store(tmp_path, host):
    history = tmp_path / "history.sqlite"

    def start(name: str) -> SpawnedServer | SpawnedService:
        if host == "service":
            return service(tmp_path / name, history_path=history).start()
        return extension(tmp_path / name, history).start()

    first = start("one")
    try:
        grace = await connect_as(first, "grace")
        await grace.join("chat:durable-mute")
        await grace.publish("chat:durable-mute", "mute", {"user": "alan", "seconds": 3600})
    finally:
        first.stop()
    second = start("two")
    try:
        alan = await connect_as(second, "alan")
        await alan.join("chat:durable-mute")
        reason, detail = await refused(alan, "chat:durable-mute", "text", {"text": "hi"})
        assert reason == "unauthorized"
        assert "muted" in detail
    finally:
        second.stop()


@pytest.fixture(scope="module")
def replicas(redis_server, tmp_path_factory):
    """Two services on one Redis database of their own (emptied first), with the rules."""
    redis_server.client(3).flushdb()
    root = tmp_path_factory.mktemp("moderation-replicas")

    pair = (service(root / name, broker_url=redis_server.url(3)) for name in ("a", "b"))
    with started_together(*pair) as started:
        yield started


async def test_a_mute_on_one_server_holds_on_another_sharing_redis(replicas):
    a, b = replicas
    grace = await a.connect("grace")
    alan = await b.connect("alan")
    ada = await b.connect("ada")
    for client in (grace, alan, ada):
        await client.join("chat:shared-mute")
    await grace.publish("chat:shared-mute", "mute", {"user": "alan", "seconds": 3600})
    reason, _ = await refused(alan, "chat:shared-mute", "text", {"text": "hi"})
    assert reason == "unauthorized"
    # A REST post to the other server, which alan's topic may not even be subscribed on.
    body = {"subject": "text", "payload": {"text": "hi"}}
    with pytest.raises(urllib.error.HTTPError, match="403"):
        a.rest("POST", "api/channels/topics/chat:shared-mute/messages", body,
               token=token_of("alan"))  # fmt: skip
    await grace.publish("chat:shared-mute", "mute", {"user": "alan", "seconds": 0})
    assert (await sent(alan, "chat:shared-mute", "text", {"text": "back"}))["status"] == "ok"


async def test_an_edit_on_one_server_checks_the_author_of_a_message_sent_on_another(replicas):
    a, b = replicas
    ada = await a.connect("ada")
    alan = await b.connect("alan")
    for client in (ada, alan):
        await client.join("chat:shared-edit")
    offset = await ada.publish("chat:shared-edit", "text", {"text": "mine"})
    reason, _ = await refused(alan, "chat:shared-edit", "edit", {"offset": offset, "text": "x"})
    assert reason == "unauthorized"
    ada_on_b = await b.connect("ada")
    await ada_on_b.join("chat:shared-edit")
    assert (await sent(ada_on_b, "chat:shared-edit", "delete", {"offset": offset}))["status"] == (
        "ok"
    )
