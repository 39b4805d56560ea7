"""Topic permissions on a real Jupyter server: the WebSocket and the REST API refuse
what the rules do not allow, with the rule in the detail, before any hook runs.

The test users: ada (group ``red``), grace (group ``teachers``), alan (no group).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_channels import Channel

from .channels_fixture import CALLS, as_user
from .support import error_reason

RULES = [
    {"topic": "announce:*", "join": "*", "send": "@teachers"},
    {"topic": "group:{group}:*", "join": "@{group}", "send": "@{group}"},
    {"topic": "user:{user}:*", "join": "{user}", "send": "*"},
    {"topic": "lab:*", "join": ["alan", "@teachers"], "send": ["alan", "@teachers"]},
    {"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"},
]


class Recording(Channel):
    """Records every hook call in ``CALLS``; a join is answered with what the hook saw
    of the user's groups."""

    async def handle_joined(self, client, message):
        CALLS.append(("joined", message.topic, client.user.username))
        await self.push(
            client, "whoami", {"groups": list(client.user.groups), "admin": client.user.admin}
        )

    async def handle_message(self, client, message):
        CALLS.append(("message", message.topic, client.user.username))
        await self.rebroadcast(message)


def rules(permissions: list[dict[str, Any]] | None) -> pytest.MarkDecorator:
    """Run one test with ``Recording`` on every topic and these permissions."""
    traits = {
        "channels": {},
        "default_channel": f"{__name__}:Recording",
        "permissions": permissions,
    }
    return pytest.mark.parametrize("channels_config", [traits], ids=["permissions"])


@pytest.fixture(autouse=True)
def _no_calls():
    CALLS.clear()
    yield
    CALLS.clear()


pytestmark = pytest.mark.on_every_host
#: CALLS is recorded by a server in this process: the extension's, not the service's.
records_calls = pytest.mark.extension_only("reads CALLS, recorded by a server in this process")


@pytest.fixture
def rest(channels_fetch):
    """``await rest(method, *path, user=..., body=...)`` -> ``(status, parsed body)``."""

    async def call(method: str, *path: str, user: str = "ada", body: Any = None):
        response = await channels_fetch(
            *path,
            method=method,
            body=None if body is None else json.dumps(body),
            raise_error=False,
            **as_user(user),
        )
        return response.code, json.loads(response.body) if response.body else None

    return call


async def refused(ws, frame: dict[str, Any]) -> str:
    """Send ``frame``; assert it is refused as ``unauthorized`` and return the detail."""
    reply = await ws.request(frame)
    assert error_reason(reply) == "unauthorized", reply
    return reply["payload"]["response"]["detail"]


def send(topic: str) -> dict[str, Any]:
    return {"event": "message", "topic": topic, "subject": "text", "payload": {"text": "hi"}}


def join(topic: str) -> dict[str, Any]:
    return {"event": "join", "topic": topic}


# -- the WebSocket ---------------------------------------------------------------------------------


@records_calls
@rules(RULES)
async def test_anyone_reads_announcements_and_only_teachers_send_them(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    grace = await channels_ws(**as_user("grace"))
    joined = await ada.join("announce:class")
    assert joined["can_send"] is False
    assert "can_send" not in await grace.join("announce:class")

    assert await refused(ada, send("announce:class")) == (
        "not allowed to send to 'announce:class' (rule 1: topic 'announce:*', send '@teachers')"
    )
    assert await grace.publish("announce:class") == 1
    [whoami, message] = await ada.messages(2, "announce:class")
    assert whoami["subject"] == "whoami"
    assert (message["subject"], message["from"]["user"]) == ("text", "grace")
    assert ("message", "announce:class", "ada") not in CALLS
    assert ("message", "announce:class", "grace") in CALLS


@records_calls
@rules(RULES)
async def test_a_refused_join_never_runs_the_hook_nor_joins(channels_ws):
    alan = await channels_ws(**as_user("alan"))
    assert await refused(alan, join("user:ada:inbox")) == (
        "not allowed to join 'user:ada:inbox' (rule 3: topic 'user:{user}:*', join '{user}')"
    )
    assert CALLS == []
    # Not joined: no presence, no history, and sending says so.
    await alan.silent()
    reply = await alan.request({"event": "history", "topic": "user:ada:inbox", "payload": {}})
    assert error_reason(reply) == "not_joined"


@records_calls
@rules(RULES)
async def test_an_inbox_is_joined_by_its_owner_alone(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    alan = await channels_ws(**as_user("alan"))
    assert "can_send" not in await ada.join("user:ada:inbox")
    assert "can_send" not in await alan.join("user:alan:inbox")
    await refused(alan, join("user:ada:inbox"))
    await refused(ada, join("user:alan:inbox"))
    assert sorted(CALLS) == [
        ("joined", "user:ada:inbox", "ada"),
        ("joined", "user:alan:inbox", "alan"),
    ]


@rules(RULES)
async def test_a_group_topic_admits_the_group_it_names_and_no_one_else(channels_ws):
    ada = await channels_ws(**as_user("ada"))
    grace = await channels_ws(**as_user("grace"))
    assert "can_send" not in await ada.join("group:red:chat")
    assert await ada.publish("group:red:chat") == 1
    assert await refused(grace, join("group:red:chat")) == (
        "not allowed to join 'group:red:chat' (rule 2: topic 'group:{group}:*', join '@{group}')"
    )
    await refused(ada, join("group:teachers:chat"))
    assert "can_send" not in await grace.join("group:teachers:chat")


@rules(RULES)
async def test_a_list_admits_each_principal_it_names(channels_ws):
    alan = await channels_ws(**as_user("alan"))
    grace = await channels_ws(**as_user("grace"))
    ada = await channels_ws(**as_user("ada"))
    await alan.join("lab:1")
    await grace.join("lab:1")
    assert await alan.publish("lab:1") == 1
    assert await grace.publish("lab:1") == 2
    assert await refused(ada, join("lab:1")) == (
        "not allowed to join 'lab:1' (rule 4: topic 'lab:*', join ['alan', '@teachers'])"
    )


@rules(RULES)
async def test_the_catch_all_rule_lets_everyone_join_and_send(channels_ws):
    alan = await channels_ws(**as_user("alan"))
    assert "can_send" not in await alan.join("chat:lobby")
    assert await alan.publish("chat:lobby") == 1


@records_calls
@rules([{"topic": "chat:*", "join": "*", "send": "*"}])
async def test_a_topic_no_rule_matches_is_refused(channels_ws):
    grace = await channels_ws(**as_user("grace"))
    assert await refused(grace, join("other:topic")) == (
        "not allowed to join 'other:topic' (no rule matches it)"
    )
    await grace.join("chat:lobby")
    assert CALLS == [("joined", "chat:lobby", "grace")]


@rules(RULES)
async def test_hooks_see_the_groups_and_admin_of_the_identity(channels_ws):
    grace = await channels_ws(**as_user("grace"))
    alan = await channels_ws(**as_user("alan"))
    await grace.join("chat:lobby")
    await alan.join("chat:lobby")
    [seen] = await grace.messages(1, "chat:lobby")
    assert seen["payload"] == {"groups": ["teachers"], "admin": False}
    [seen] = await alan.messages(1, "chat:lobby")
    assert seen["payload"] == {"groups": [], "admin": False}


@rules(None)
async def test_without_rules_everyone_may_do_everything(channels_ws):
    alan = await channels_ws(**as_user("alan"))
    assert "can_send" not in await alan.join("announce:class")
    assert await alan.publish("announce:class") == 1


# -- REST ------------------------------------------------------------------------------------------


@records_calls
@rules(RULES)
async def test_a_refused_rest_post_is_unauthorized_and_never_runs_the_hook(rest):
    status, body = await rest(
        "POST", "topics", "announce:class", "messages", body={"subject": "text", "payload": {}}
    )
    assert (status, body) == (
        403,
        {
            "reason": "unauthorized",
            "detail": "not allowed to send to 'announce:class' "
            "(rule 1: topic 'announce:*', send '@teachers')",
        },
    )
    assert CALLS == []
    status, body = await rest(
        "POST",
        "topics",
        "announce:class",
        "messages",
        user="grace",
        body={"subject": "text", "payload": {}},
    )
    assert (status, body) == (200, {"offset": 1})
    assert CALLS == [("message", "announce:class", "grace")]


@rules(RULES)
async def test_rest_reads_of_an_inbox_are_its_owners_and_posts_anyones(rest, channels_ws):
    ada = await channels_ws(**as_user("ada"))
    await ada.join("user:ada:inbox")
    note = {"subject": "text", "payload": {"text": "see me"}}
    assert await rest("POST", "topics", "user:ada:inbox", "messages", user="alan", body=note) == (
        200,
        {"offset": 1},
    )
    detail = "not allowed to join 'user:ada:inbox' (rule 3: topic 'user:{user}:*', join '{user}')"
    for path in ("messages", "presence"):
        status, body = await rest("GET", "topics", "user:ada:inbox", path, user="alan")
        assert (status, body) == (403, {"reason": "unauthorized", "detail": detail}), path
    status, body = await rest("GET", "topics", "user:ada:inbox", "messages", user="ada")
    assert status == 200
    assert [m["payload"] for m in body["messages"]] == [{"text": "see me"}]
    status, body = await rest("GET", "topics", "user:ada:inbox", "presence", user="ada")
    assert status == 200
    assert list(body) == ["ada"]


@rules(RULES)
async def test_rest_group_reads_follow_the_group(rest, channels_ws):
    ada = await channels_ws(**as_user("ada"))
    await ada.join("group:red:chat")
    assert (await rest("GET", "topics", "group:red:chat", "presence", user="ada"))[0] == 200
    assert (await rest("GET", "topics", "group:red:chat", "messages", user="ada"))[0] == 200
    for user in ("grace", "alan"):
        status, body = await rest("GET", "topics", "group:red:chat", "presence", user=user)
        assert status == 403
        assert body["reason"] == "unauthorized"
        assert "rule 2: topic 'group:{group}:*'" in body["detail"]
        status, body = await rest("GET", "topics", "group:red:chat", "messages", user=user)
        assert status == 403


@rules(RULES)
async def test_the_topic_list_shows_each_user_only_topics_they_may_join(rest, channels_ws):
    ada = await channels_ws(**as_user("ada"))
    await ada.join("user:ada:inbox")
    await ada.join("group:red:chat")
    await ada.join("chat:lobby")

    async def listed(user: str) -> list[str]:
        status, body = await rest("GET", "topics", user=user)
        assert status == 200
        return [entry["topic"] for entry in body]

    assert await listed("ada") == ["chat:lobby", "group:red:chat", "user:ada:inbox"]
    assert await listed("alan") == ["chat:lobby"]


@records_calls
@rules([{"topic": "chat:*", "join": "*", "send": "*"}])
async def test_rest_on_a_topic_no_rule_matches_is_refused(rest):
    for method, path, action in (
        ("GET", "messages", "join"),
        ("GET", "presence", "join"),
        ("POST", "messages", "send to"),
    ):
        body = {"subject": "text", "payload": {}} if method == "POST" else None
        status, answer = await rest(method, "topics", "other:x", path, user="grace", body=body)
        assert (status, answer) == (
            403,
            {
                "reason": "unauthorized",
                "detail": f"not allowed to {action} 'other:x' (no rule matches it)",
            },
        )
    assert CALLS == []
