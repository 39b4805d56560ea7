"""The REST API under ``{base_url}api/channels/``: topics, history, posting, presence, on
every host (tests/hosts.py)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from jupyter_channels.history.base import StoreUnavailable

from .channels_fixture import as_user
from .support import config

pytestmark = pytest.mark.on_every_host

CHAT = "chat:lobby"


@pytest.fixture
def rest(channels_fetch):
    """``await rest(method, *path, body=..., **kwargs)`` -> ``(status, parsed body)``;
    error statuses are returned, not raised."""

    async def call(method: str, *path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        response = await channels_fetch(
            *path, method=method, body=body, raise_error=False, **kwargs
        )
        return response.code, json.loads(response.body) if response.body else None

    return call


@pytest.fixture
def raw_get(http_server_client, jp_auth_header, jp_base_url):
    """GET a path below ``{base_url}api/channels/`` exactly as written (nothing escaped)."""

    async def get(path: str) -> tuple[int, Any]:
        response = await http_server_client.fetch(
            f"{jp_base_url}api/channels/{path}", headers=jp_auth_header, raise_error=False
        )
        return response.code, json.loads(response.body)

    return get


async def post(rest, topic: str, subject: str = "text", payload: Any = None, **kwargs: Any):
    body = {"subject": subject, "payload": {} if payload is None else payload}
    return await rest("POST", "topics", topic, "messages", body=body, **kwargs)


async def post_many(rest, topic: str, n: int) -> list[int]:
    offsets = []
    for i in range(1, n + 1):
        status, body = await post(rest, topic, payload={"n": i})
        assert status == 200, body
        offsets.append(body["offset"])
    return offsets


def pin_ms(frame: dict[str, Any]) -> dict[str, Any]:
    ts = frame["ts"]
    assert isinstance(ts, int)
    assert ts > 1_600_000_000_000
    return {**frame, "ts": "<ms>"}


# -- GET topics ---------------------------------------------------------------------------------


async def test_topics_is_empty_before_anything_happened(rest):
    assert await rest("GET", "topics") == (200, [])


async def test_topics_lists_topics_with_members_or_history_with_their_counts(rest, channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await ada.join("chat:members")
    await grace.join("chat:members")
    await ada.join("chat:both")
    await post_many(rest, "chat:both", 1)
    await post_many(rest, "chat:history", 3)
    await ada.join("chat:left")
    await ada.request({"event": "leave", "topic": "chat:left"})

    status, topics = await rest("GET", "topics")

    assert status == 200
    assert topics == [
        {"topic": "chat:both", "members": 1, "offset": 1},
        {"topic": "chat:history", "members": 0, "offset": 3},
        {"topic": "chat:members", "members": 2, "offset": 0},
    ]


async def test_a_topic_without_history_leaves_the_list_with_its_last_member(rest, channels_ws):
    ada = await channels_ws()
    await ada.join("chat:brief")
    assert (await rest("GET", "topics"))[1] == [{"topic": "chat:brief", "members": 1, "offset": 0}]

    ada.close()
    for _ in range(100):
        if (await rest("GET", "topics"))[1] == []:
            break

    assert await rest("GET", "topics") == (200, [])


# -- GET messages -------------------------------------------------------------------------------


async def test_messages_returns_the_stored_frames_offset_and_epoch(rest, channels_ws):
    await post_many(rest, CHAT, 2)
    ada = await channels_ws()
    joined = await ada.join(CHAT, history=2)

    status, body = await rest("GET", "topics", CHAT, "messages")

    assert status == 200
    assert body["epoch"] == joined["epoch"]
    assert body["messages"] == joined["messages"]
    assert {**body, "epoch": "<epoch>", "messages": [pin_ms(m) for m in body["messages"]]} == {
        "messages": [
            {
                "event": "message",
                "topic": CHAT,
                "subject": "text",
                "payload": {"n": n},
                "offset": n,
                "ts": "<ms>",
                "from": body["messages"][n - 1]["from"],
            }
            for n in (1, 2)
        ],
        "offset": 2,
        "epoch": "<epoch>",
        "recovered": True,
    }


@pytest.mark.parametrize(
    ("params", "offsets"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"since": "3"}, [4, 5]),
        ({"since": "0"}, [1, 2, 3, 4, 5]),
        ({"since": "5"}, []),
        ({"before": "3"}, [1, 2]),
        ({"limit": "2"}, [4, 5]),
        ({"before": "5", "limit": "2"}, [3, 4]),
        ({"limit": "0"}, []),
    ],
    ids=["all", "since-3", "since-0", "since-last", "before-3", "limit-2", "page", "limit-0"],
)
async def test_messages_filters_with_since_before_and_limit(rest, params, offsets):
    await post_many(rest, CHAT, 5)

    status, body = await rest("GET", "topics", CHAT, "messages", params=params)

    assert status == 200
    assert body["offset"] == 5
    assert [m["offset"] for m in body["messages"]] == offsets


async def test_messages_of_a_topic_never_used_is_empty_at_offset_zero(rest):
    status, body = await rest("GET", "topics", "chat:nobody", "messages")

    assert status == 200
    assert (body["messages"], body["offset"]) == ([], 0)


@pytest.mark.parametrize("topic", [CHAT, "team/a:b+c@d.e-f"], ids=["colon", "every-char"])
async def test_a_topic_in_the_url_may_be_url_encoded_or_raw(rest, raw_get, topic):
    await post_many(rest, topic, 2)

    encoded = await raw_get(f"topics/{quote(topic, safe='')}/messages")
    raw = await raw_get(f"topics/{topic}/messages")

    assert encoded[0] == raw[0] == 200
    assert encoded[1] == raw[1]
    assert [m["topic"] for m in raw[1]["messages"]] == [topic, topic]


async def test_the_url_encoded_topic_chat_3a_lobby_is_chat_lobby(rest, raw_get):
    await post_many(rest, CHAT, 1)

    status, body = await raw_get("topics/chat%3Alobby/messages")

    assert status == 200
    assert body["messages"][0]["topic"] == CHAT


@pytest.mark.parametrize("params", [{"since": "x"}, {"limit": "-1"}, {"before": "1.5"}], ids=str)
async def test_messages_refuses_a_query_argument_that_is_not_a_count(rest, params):
    status, _ = await rest("GET", "topics", CHAT, "messages", params=params)

    assert status == 400


async def test_an_invalid_topic_in_the_url_is_refused_with_invalid_message(rest):
    status, body = await rest("GET", "topics", "bad topic!", "messages")

    assert status == 400
    assert body["reason"] == "invalid_message"


async def test_messages_when_the_store_cannot_be_read_is_503_unavailable(
    rest, channels_app, monkeypatch
):
    async def failing_read(topic, **kwargs):
        raise StoreUnavailable("the history store is down")

    monkeypatch.setattr(channels_app.hub.broker, "read", failing_read)

    status, body = await rest("GET", "topics", CHAT, "messages")

    assert status == 503
    assert body == {"reason": "unavailable", "detail": "the history store is down"}


# -- POST messages ------------------------------------------------------------------------------


async def test_a_posted_message_reaches_ws_subscribers_from_the_requesting_user(rest, channels_ws):
    grace = await channels_ws(**as_user("grace"))
    await grace.join(CHAT)

    status, body = await post(rest, CHAT, "text", {"text": "from REST"}, **as_user("ada"))

    assert (status, body) == (200, {"offset": 1})
    (frame,) = await grace.messages(1)
    sender = frame.pop("from")
    assert pin_ms(frame) == {
        "event": "message",
        "topic": CHAT,
        "subject": "text",
        "payload": {"text": "from REST"},
        "offset": 1,
        "ts": "<ms>",
    }
    assert sender["id"].startswith("rest-")
    assert {k: v for k, v in sender.items() if k != "id"} == {
        "user": "ada",
        "name": "Ada Lovelace",
        "kind": "browser",
    }


async def test_a_message_posted_with_the_kernel_token_comes_from_the_kernel(
    rest, channels_ws, channels_app
):
    grace = await channels_ws(**as_user("grace"))
    await grace.join(CHAT)

    status, _ = await post(
        rest,
        CHAT,
        headers={"Authorization": f"token {channels_app.kernel_token}"},
        params={"name": "analysis.ipynb"},
    )

    assert status == 200
    (frame,) = await grace.messages(1)
    assert {k: v for k, v in frame["from"].items() if k != "id"} == {
        "user": "kernel",
        "name": "analysis.ipynb",
        "kind": "kernel",
    }


async def test_posted_messages_get_consecutive_offsets_and_are_stored(rest):
    assert await post_many(rest, CHAT, 3) == [1, 2, 3]

    _, body = await rest("GET", "topics", CHAT, "messages")
    assert [m["payload"] for m in body["messages"]] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_posted_message_without_a_payload_carries_an_empty_object(rest):
    status, _ = await rest("POST", "topics", CHAT, "messages", body={"subject": "text"})

    assert status == 200
    _, body = await rest("GET", "topics", CHAT, "messages")
    assert body["messages"][0]["payload"] == {}


async def test_a_dict_returned_by_handle_message_is_merged_into_the_post_response(rest):
    assert await post(rest, "accept:x", "note") == (
        200,
        {"offset": 1, "accepted": True, "subject": "note"},
    )


async def test_a_channel_rejecting_a_posted_message_gives_403_unauthorized(rest):
    status, body = await post(rest, "readonly:news")

    assert status == 403
    assert body == {"reason": "unauthorized", "detail": "this topic is read-only"}


async def test_a_channel_raising_on_a_posted_message_gives_500_internal_error(rest):
    status, body = await post(rest, "boom:1")

    assert status == 500
    assert body["reason"] == "internal_error"


@pytest.mark.parametrize(
    "body",
    ["{not json", "[1, 2]", '"text"', "{}", '{"subject": ""}', '{"subject": 5}'],
    ids=["not-json", "array", "string", "no-subject", "empty-subject", "number-subject"],
)
async def test_a_body_that_is_not_a_message_gives_400_invalid_message(rest, body):
    status, answer = await rest("POST", "topics", CHAT, "messages", body=body)

    assert status == 400
    assert answer["reason"] == "invalid_message"
    assert (await rest("GET", "topics", CHAT, "messages"))[1]["offset"] == 0


@config(default_channel=None)
async def test_posting_to_a_topic_no_channel_serves_gives_404_unmatched_topic(rest):
    status, body = await post(rest, CHAT)

    assert status == 404
    assert body == {"reason": "unmatched_topic", "detail": f"no channel serves {CHAT!r}"}


@config(max_message_size=1000)
async def test_a_body_over_max_message_size_gives_413_too_large(rest):
    status, body = await post(rest, CHAT, payload="x" * 1500)

    assert status == 413
    assert body["reason"] == "too_large"


async def test_a_post_the_store_cannot_take_gives_503_unavailable(rest, channels_app, monkeypatch):
    import asyncio

    def failing_publish(draft):
        future = asyncio.get_running_loop().create_future()
        future.set_exception(StoreUnavailable("the history store is down"))
        return future

    monkeypatch.setattr(channels_app.hub.broker, "publish", failing_publish)

    status, body = await post(rest, CHAT)

    assert status == 503
    assert body == {"reason": "unavailable", "detail": "the history store is down"}


# -- GET presence -------------------------------------------------------------------------------


async def test_presence_returns_the_presence_state_of_connected_clients(rest, channels_ws):
    first = await channels_ws()
    second = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await first.join(CHAT)
    await second.join(CHAT)
    await grace.send({"event": "join", "topic": CHAT, "ref": "g"})
    state = await grace.expect("presence_state", topic=CHAT)

    status, body = await rest("GET", "topics", CHAT, "presence")

    assert status == 200
    assert body == state["payload"]
    assert sorted(body) == ["ada", "grace"]
    assert len(body["ada"]["metas"]) == 2
    assert set(body["grace"]["metas"][0]) == {
        "id",
        "kind",
        "name",
        "initials",
        "color",
        "online_at",
        "phx_ref",
    }


async def test_presence_drops_a_client_once_it_leaves(rest, channels_ws):
    ada = await channels_ws()
    grace = await channels_ws(**as_user("grace"))
    await ada.join(CHAT)
    await grace.join(CHAT)

    await ada.request({"event": "leave", "topic": CHAT})

    assert sorted((await rest("GET", "topics", CHAT, "presence"))[1]) == ["grace"]


async def test_presence_of_an_empty_topic_is_an_empty_object(rest):
    assert await rest("GET", "topics", "chat:nobody", "presence") == (200, {})


# -- bad arguments and bad credentials ----------------------------------------------------------


async def _fetch(http_server_client, url: str, **kwargs: Any) -> tuple[int, Any]:
    response = await http_server_client.fetch(url, raise_error=False, **kwargs)
    return response.code, json.loads(response.body)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "²", "١٢"])
async def test_a_bad_integer_argument_is_answered_400_and_no_log_line_holds_the_token(
    http_server_client, jp_base_url, channels_app, caplog, value
):
    token = channels_app.kernel_token
    url = f"{jp_base_url}api/channels/topics/chat%3Alobby/messages?limit={quote(value)}"

    with caplog.at_level("DEBUG"):
        code, body = await _fetch(http_server_client, f"{url}&token={token}")

    assert code == 400
    assert body == {"reason": "invalid_message", "detail": "'limit' must be a non-negative integer"}
    assert token not in caplog.text


async def test_a_post_with_a_wrong_token_is_refused_403_unauthorized(
    http_server_client, jp_base_url
):
    code, body = await _fetch(
        http_server_client,
        f"{jp_base_url}api/channels/topics/chat%3Alobby/messages",
        method="POST",
        body=json.dumps({"subject": "text", "payload": {}}),
        headers={"Authorization": "token not-the-token"},
    )

    assert code == 403
    assert body["reason"] == "unauthorized"
    assert "xsrf" not in body["detail"].lower()
    assert "not authenticated" in body["detail"]
