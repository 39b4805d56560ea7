"""Phoenix clients on the same endpoint (``?vsn=2.0.0``): the unmodified ``phoenix`` npm
client (driven from Node by tests/phoenix/driver.mjs) and raw V2 frames, beside native
clients, on the extension and on the service."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_channels import Channel
from jupyter_channels.edges import phoenix

from .channels_fixture import CHANNELS, USERS, as_user
from .service_support import token_of
from .test_fuzz import ErrorLog

pytestmark = pytest.mark.on_every_host

DRIVER = Path(__file__).parent / "phoenix" / "driver.mjs"
TIMEOUT = 30.0


class Dropper(Channel):
    """Rebroadcasts; a ``drop`` message makes the server drop the sender's socket."""

    async def handle_message(self, client, message):
        if message.subject == "drop":
            client.disconnect("dropped")
            return
        await self.rebroadcast(message)


TEST_CHANNELS = {**CHANNELS, "drop:*": f"{__name__}:Dropper"}


@pytest.fixture
def channels_config() -> dict:
    return {"channels": TEST_CHANNELS, "presence_interval": 0}


def forbidding(detail_topic: str) -> pytest.MarkDecorator:
    """Permissions refusing every join to ``detail_topic``."""
    rules = [
        {"topic": detail_topic, "join": "nobody", "send": "nobody"},
        {"topic": "*", "join": "*", "send": "*"},
    ]
    traits = {"channels": TEST_CHANNELS, "presence_interval": 0, "permissions": rules}
    return pytest.mark.parametrize("channels_config", [traits], ids=["permissions"])


@dataclass
class Endpoint:
    """Where a Phoenix client connects, as ada: ``new Socket(url, {params: {token}})``."""

    url: str
    token: str
    #: The ``kind`` the host stamps on a Node client's messages (the service: ``kernel``,
    #: as for any client that is not a browser page sending an Origin).
    kind: str
    #: Errors and tracebacks the server logged so far.
    errors: Callable[[], list[str]]

    async def v2(self) -> Any:
        """A raw V2 connection (a Tornado WebSocket client)."""
        request = HTTPRequest(
            f"{self.url}/websocket?vsn={phoenix.VSN}&token={self.token}",
            connect_timeout=TIMEOUT,
            request_timeout=TIMEOUT,
        )
        return await websocket_connect(request)


@pytest.fixture
def endpoint(request, host, channels_ws) -> Iterator[Endpoint]:
    """The Phoenix endpoint of the host ``channels_ws`` talks to."""
    if host == "service":
        service = request.getfixturevalue("channels_service")

        def service_errors() -> list[str]:
            text = service.log_path.read_text()
            return [
                line
                for line in text.splitlines()
                if "Traceback" in line or line.startswith(("[E ", "[C "))
            ]

        url = service.ws_url.removesuffix("/websocket")
        yield Endpoint(url, token_of("ada"), "kernel", service_errors)
        return
    app = request.getfixturevalue("jp_serverapp")
    port = request.getfixturevalue("jp_http_port")
    base = request.getfixturevalue("jp_base_url")
    handler = ErrorLog()
    loggers = [logging.getLogger(), app.log]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        url = f"ws://127.0.0.1:{port}{base}api/channels"
        yield Endpoint(url, app.identity_provider.token, "browser", lambda: list(handler.records))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


class Driver:
    """The ``phoenix`` npm client in a Node process: commands in, events out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._arrived = asyncio.Event()
        self._ids = itertools.count(1)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, endpoint: Endpoint) -> Driver:
        node = shutil.which("node")
        assert node is not None, "node is needed to run the phoenix client"
        proc = await asyncio.create_subprocess_exec(
            node,
            str(DRIVER),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        driver = cls(proc)
        await driver.send("connect", url=endpoint.url, token=endpoint.token)
        await driver.expect(lambda e: e["event"] == "open")
        return driver

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._arrived.set()

    async def send(self, cmd: str, **fields: Any) -> str:
        """Send a command; its id, which its answer carries."""
        assert self.proc.stdin is not None
        command_id = str(next(self._ids))
        self.proc.stdin.write(json.dumps({"cmd": cmd, "id": command_id, **fields}).encode() + b"\n")
        await self.proc.stdin.drain()
        return command_id

    async def expect(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first event not taken yet that ``match`` accepts, waiting for it."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, event in enumerate(self.events):
                assert event["event"] != "driver_error", event
                if i not in self._taken and match(event):
                    self._taken.add(i)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such event; the events so far: {self.events}")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def answer(self, command_id: str) -> dict[str, Any]:
        return await self.expect(lambda e: e.get("id") == command_id)

    async def join(self, topic: str, params: Any = None, on: tuple[str, ...] = ()) -> dict:
        command_id = await self.send("join", topic=topic, params=params or {}, on=list(on))
        return await self.answer(command_id)

    async def push(self, topic: str, name: str, payload: Any) -> dict:
        return await self.answer(await self.send("push", topic=topic, name=name, payload=payload))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("exit")
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def phoenix_client(endpoint: Endpoint):
    driver = await Driver.start(endpoint)
    try:
        yield driver
    finally:
        await driver.stop()


def sync_with(*usernames: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "sync" and sorted(e["members"]) == sorted(usernames)


# -- the phoenix npm client ------------------------------------------------------------------------


async def test_a_phoenix_client_joins_and_its_push_reaches_a_native_client_as_itself(
    endpoint, channels_ws
):
    native = await channels_ws(**as_user("grace"))
    await native.join("accept:phx")
    async with phoenix_client(endpoint) as client:
        joined = await client.join("accept:phx")
        assert joined["status"] == "ok", joined
        assert {"offset", "epoch", "messages", "recovered"} <= set(joined["response"])

        pushed = await client.push("accept:phx", "text", {"text": "from phoenix"})

        assert pushed["status"] == "ok", pushed
        assert pushed["response"]["accepted"] is True
        [message] = await native.messages(1, "accept:phx")
        assert message["subject"] == "text"
        assert message["payload"] == {"text": "from phoenix"}
        assert message["offset"] == pushed["response"]["offset"]
        assert message["from"]["user"] == "ada"
        assert message["from"]["name"] == USERS["ada"][0]
        assert message["from"]["kind"] == endpoint.kind
    assert endpoint.errors() == []


async def test_a_native_message_arrives_at_channel_on_with_a_plain_payload(endpoint, channels_ws):
    native = await channels_ws(**as_user("grace"))
    await native.join("accept:plain")
    async with phoenix_client(endpoint) as client:
        assert (await client.join("accept:plain", on=("text",)))["status"] == "ok"

        offset = await native.publish("accept:plain", "text", {"text": "from native"})

        event = await client.expect(lambda e: e["event"] == "on")
        assert event == {
            "event": "on",
            "topic": "accept:plain",
            "name": "text",
            "payload": {"text": "from native"},
        }
        assert offset > 0


async def test_a_join_asking_for_meta_gets_offset_ts_and_from_in_each_payload(
    endpoint, channels_ws
):
    native = await channels_ws(**as_user("grace"))
    await native.join("accept:meta")
    first = await native.publish("accept:meta", "text", {"text": "before"})
    async with phoenix_client(endpoint) as client:
        joined = await client.join("accept:meta", {"meta": True, "since": 0}, on=("text",))
        assert joined["response"]["recovered"] is True
        assert [m["payload"] for m in joined["response"]["messages"]] == [{"text": "before"}]
        assert joined["response"]["messages"][0]["offset"] == first

        offset = await native.publish("accept:meta", "text", {"text": "after"})

        event = await client.expect(lambda e: e["event"] == "on")
        meta = event["payload"].pop("_meta")
        assert event["payload"] == {"text": "after"}
        assert meta["offset"] == offset
        assert isinstance(meta["ts"], int)
        assert meta["from"]["user"] == "grace"


async def test_presence_on_sync_lists_native_and_phoenix_members_and_drops_one_that_leaves(
    endpoint, channels_ws
):
    async with phoenix_client(endpoint) as client:
        assert (await client.join("accept:room"))["status"] == "ok"
        await client.expect(sync_with("ada"))
        native = await channels_ws(**as_user("grace"))
        await native.join("accept:room")

        both = await client.expect(sync_with("ada", "grace"))
        assert [meta["kind"] for meta in both["members"]["grace"]] == ["browser"]
        assert all("phx_ref" in meta for metas in both["members"].values() for meta in metas)

        reply = await native.request({"event": "leave", "topic": "accept:room"})
        assert reply["payload"]["status"] == "ok"
        await client.expect(sync_with("ada"))


async def test_a_join_refused_by_a_hook_is_received_as_an_error_with_its_detail(
    endpoint, channels_ws
):
    async with phoenix_client(endpoint) as client:
        refused = await client.join("invite:secret", {"invite": "no"})
        assert refused["status"] == "error"
        assert refused["response"] == {"reason": "join_rejected", "detail": "invite required"}

        client_params_are_the_channels = await client.join("invite:open", {"invite": "ok"})
        assert client_params_are_the_channels["status"] == "ok"
    assert endpoint.errors() == []


async def test_a_heartbeat_is_answered_ok_on_topic_phoenix(endpoint, channels_ws):
    async with phoenix_client(endpoint) as client:
        command_id = await client.send("ping")

        await client.answer(command_id)
        reply = await client.expect(lambda e: e["event"] == "socket_frame")
        assert reply["frame"] == {
            "join_ref": None,
            "ref": reply["frame"]["ref"],
            "topic": "phoenix",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {}},
        }


async def test_after_the_server_drops_the_socket_the_client_rejoins_by_itself(
    endpoint, channels_ws
):
    native = await channels_ws(**as_user("grace"))
    await native.join("drop:again")
    async with phoenix_client(endpoint) as client:
        assert (await client.join("drop:again", on=("text",)))["status"] == "ok"

        await client.send("push", topic="drop:again", name="drop", payload={})

        await client.expect(lambda e: e["event"] == "close")
        await client.expect(lambda e: e["event"] == "open")
        rejoined = await client.expect(lambda e: e["event"] == "join")
        assert rejoined["status"] == "ok"
        await native.publish("drop:again", "text", {"text": "still here?"})
        event = await client.expect(lambda e: e["event"] == "on")
        assert event["payload"] == {"text": "still here?"}
    assert endpoint.errors() == []


@forbidding("closed:*")
async def test_a_join_to_a_forbidden_topic_is_an_error_naming_the_rule(endpoint, channels_ws):
    async with phoenix_client(endpoint) as client:
        refused = await client.join("closed:door")

        assert refused["status"] == "error"
        assert refused["response"]["reason"] == "unauthorized"
        assert "closed:*" in refused["response"]["detail"]
    assert endpoint.errors() == []


# -- raw V2 frames -------------------------------------------------------------------------------


async def read_v2(conn: Any) -> list[Any]:
    raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
    assert raw is not None, f"closed: {conn.close_code} {conn.close_reason}"
    assert raw != "ping"
    return json.loads(raw)


async def test_frames_with_fields_of_the_wrong_types_are_answered_with_phx_reply_errors(
    endpoint, channels_ws
):
    conn = await endpoint.v2()
    garbage: list[Any] = [
        ["1", "1", "accept:x", 42, {}],  # the event is not a string
        ["1", "2", 7, "phx_join", {}],  # the topic is not a string
        [{"a": 1}, "3", "accept:x", "phx_join", {}],  # join_ref is not a string
        ["1", "4", "accept:x", "phx_join", "params"],  # params are not an object
        ["1", "5", "accept:x", "phx_join", {"since": -1}],
        ["1", "6", "accept:x", "phx_join", {"meta": "yes"}],
        ["1", "7", "no spaces", "phx_join", {}],
        ["1", "8", "accept:x", "text", {}],  # not joined
        ["1", "9", "accept:x", "phx_reply", {}],  # a reserved event
        ["1", "10", "accept:x", "phx_join", {}, "an extra element"],  # Phoenix ignores it
    ]
    for frame in garbage:
        conn.write_message(json.dumps(frame))
    replies = [await read_v2(conn) for _ in range(len(garbage))]
    join_ok = next(r for r in replies if r[1] == "10")
    assert join_ok == ["1", "10", "accept:x", "phx_reply", join_ok[4]]
    assert join_ok[4]["status"] == "ok"
    errors = {reply[1]: reply for reply in replies if reply[1] != "10"}
    assert sorted(errors, key=int) == [str(n) for n in range(1, 10)]
    for ref, reply in errors.items():
        assert reply[3] == "phx_reply", reply
        assert reply[4]["status"] == "error", reply
        expected = "not_joined" if ref == "8" else "invalid_message"
        assert reply[4]["response"]["reason"] == expected, reply
        assert reply[4]["response"]["detail"], reply
    assert errors["1"][:3] == ["1", "1", "accept:x"]
    assert errors["2"][2] is None
    assert errors["3"][0] is None
    conn.close()
    assert endpoint.errors() == []


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"event": "phx_join"}',
        "[]",
        '["1", "1", "accept:x", "phx_join"]',
        '"a string"',
    ],
    ids=["not-json", "object", "empty-array", "four-elements", "string"],
)
async def test_a_frame_phoenix_could_not_decode_closes_the_socket(endpoint, channels_ws, frame):
    conn = await endpoint.v2()
    conn.write_message(json.dumps(["1", "1", "phoenix", "heartbeat", {}]))
    assert (await read_v2(conn))[4] == {"status": "ok", "response": {}}

    conn.write_message(frame)

    assert await asyncio.wait_for(conn.read_message(), TIMEOUT) is None
    assert conn.close_code == phoenix.FORMAT_ERROR_CLOSE
    assert endpoint.errors() == []


async def test_a_binary_push_is_refused_with_a_reply_naming_it(endpoint, channels_ws):
    conn = await endpoint.v2()
    conn.write_message(json.dumps(["1", "1", "accept:bin", "phx_join", {}]))
    assert (await read_v2(conn))[4]["status"] == "ok"
    fields = [b"1", b"2", b"accept:bin", b"upload"]
    header = bytes([0, *(len(f) for f in fields)]) + b"".join(fields)

    conn.write_message(header + b"\x00\x01\x02", binary=True)

    reply = await read_v2(conn)
    while reply[3] != "phx_reply":  # presence_state
        reply = await read_v2(conn)
    assert reply[:4] == ["1", "2", "accept:bin", "phx_reply"]
    assert reply[4]["status"] == "error"
    assert "binary payloads are not supported" in reply[4]["response"]["detail"]


async def test_a_leave_is_answered_ok_then_phx_close_and_the_native_ping_never_sent(
    endpoint, channels_ws
):
    conn = await endpoint.v2()
    conn.write_message(json.dumps(["3", "3", "accept:bye", "phx_join", {}]))
    assert (await read_v2(conn))[4]["status"] == "ok"
    state = await read_v2(conn)
    assert state[:4] == [None, None, "accept:bye", "presence_state"]

    conn.write_message(json.dumps(["3", "4", "accept:bye", "phx_leave", {}]))

    assert await read_v2(conn) == [
        "3",
        "4",
        "accept:bye",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]
    assert await read_v2(conn) == ["3", "3", "accept:bye", "phx_close", {}]


async def test_another_vsn_is_refused_at_the_handshake(endpoint, channels_ws):
    request = HTTPRequest(f"{endpoint.url}/websocket?vsn=1.0.0&token={endpoint.token}")

    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(request)

    assert refused.value.code == 400


async def test_a_subscription_the_channel_ends_gets_phx_close_on_its_join_ref(
    endpoint, channels_ws
):
    conn = await endpoint.v2()
    conn.write_message(json.dumps(["7", "7", "kick:out", "phx_join", {}]))
    assert (await read_v2(conn))[4]["status"] == "ok"

    conn.write_message(json.dumps(["7", "8", "kick:out", "kick me", {}]))

    frames = [await read_v2(conn) for _ in range(3)]  # presence_state, phx_close, the reply
    closed = next(frame for frame in frames if frame[3] == "phx_close")
    assert closed == ["7", "7", "kick:out", "phx_close", {"reason": "kicked by the channel"}]
    reply = next(frame for frame in frames if frame[3] == "phx_reply")
    assert reply[:2] == ["7", "8"]


@pytest.mark.parametrize(
    "channels_config",
    [{"channels": TEST_CHANNELS, "presence_interval": 0, "heartbeat_interval": 0.2}],
    ids=["heartbeat_interval=0.2"],
)
async def test_the_native_ping_text_frame_is_never_sent_to_a_phoenix_connection(
    endpoint, channels_ws
):
    conn = await endpoint.v2()
    native = await channels_ws()
    while await native.recv_raw() != "ping":
        pass  # the server's heartbeat went out to every connection, this one included

    conn.write_message(json.dumps([None, "1", "phoenix", "heartbeat", {}]))

    assert await read_v2(conn) == [
        None,
        "1",
        "phoenix",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]


@pytest.mark.extension_only("reads the translation cache of the server in this process")
async def test_a_broadcast_is_translated_once_for_all_phoenix_connections(
    jp_serverapp, endpoint, channels_ws
):
    subscribers = [await endpoint.v2() for _ in range(5)]
    for n, conn in enumerate(subscribers):
        meta = n % 2 == 0  # both forms of a payload are built once too
        conn.write_message(json.dumps(["1", "1", "accept:fan", "phx_join", {"meta": meta}]))
        assert (await read_v2(conn))[4]["status"] == "ok"
    native = await channels_ws(**as_user("grace"))
    await native.join("accept:fan")
    before = phoenix.frame_cache.translated

    for n in range(3):
        await native.publish("accept:fan", "text", {"n": n})
    for n, conn in enumerate(subscribers):
        for i in range(3):
            frame = await read_v2(conn)
            while frame[3] in ("presence_state", "presence_diff"):  # of the joins above
                frame = await read_v2(conn)
            assert frame[:4] == [None, None, "accept:fan", "text"]
            assert frame[4]["n"] == i
            assert ("_meta" in frame[4]) == (n % 2 == 0)

    assert phoenix.frame_cache.translated - before == 3


@pytest.mark.parametrize(
    "channels_config",
    [{"channels": TEST_CHANNELS, "presence_interval": 0, "max_message_size": 1024}],
    ids=["max_message_size=1024"],
)
async def test_a_limit_refusing_a_push_is_a_phx_reply_error_with_reason_and_detail(
    endpoint, channels_ws
):
    conn = await endpoint.v2()
    conn.write_message(json.dumps(["1", "1", "accept:big", "phx_join", {}]))
    assert (await read_v2(conn))[4]["status"] == "ok"

    conn.write_message(json.dumps(["1", "2", "accept:big", "text", {"text": "x" * 2000}]))

    reply = await read_v2(conn)
    while reply[3] != "phx_reply":  # presence_state
        reply = await read_v2(conn)
    assert reply[:4] == ["1", "2", "accept:big", "phx_reply"]
    assert reply[4]["status"] == "error"
    assert reply[4]["response"]["reason"] == "too_large"
    assert "max_message_size" in reply[4]["response"]["detail"]


# -- the translation, without sockets -------------------------------------------------------------


def test_a_phx_join_becomes_a_native_join_with_the_options_taken_out_of_its_params():
    incoming = phoenix.decode(
        json.dumps(["4", "4", "chat:x", "phx_join", {"since": 3, "meta": True, "room": "a"}])
    )

    native = json.loads(incoming.native)
    assert native == {
        "event": "join",
        "topic": "chat:x",
        "ref": '["4","4","j"]',
        "payload": {"room": "a"},
        "since": 3,
    }
    assert (incoming.topic, incoming.meta) == ("chat:x", True)


def test_any_other_event_becomes_a_message_whose_subject_is_the_event():
    native = json.loads(phoenix.decode(json.dumps(["4", "5", "chat:x", "text", [1, 2]])).native)

    assert native == {
        "event": "message",
        "topic": "chat:x",
        "subject": "text",
        "payload": [1, 2],
        "ref": '["4","5","p"]',
    }


def test_a_binary_push_header_is_read_back_as_phoenix_js_writes_it():
    fields = [b"1", b"22", b"chat:x", b"upload"]
    data = bytes([0, *(len(f) for f in fields)]) + b"".join(fields) + b"\xff\xfe"

    assert phoenix.decode_binary(data) == ("1", "22", "chat:x", "upload")
    with pytest.raises(phoenix.FormatError):
        phoenix.decode_binary(bytes([2, 1, 1, 1, 1]) + b"abcd")  # a broadcast, not a push
    with pytest.raises(phoenix.FormatError):
        phoenix.decode_binary(bytes([0, 9, 9, 9, 9]) + b"short")


def test_the_phoenix_benchmark_scenario_runs_native_and_v2_subscribers_side_by_side():
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parents[1] / "benchmarks" / "fanout.py"),
            "--quick",
            "--runs",
            "1",
            "--scenarios",
            "phoenix",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = result.stdout
    for row in ("fanout S=5 M=20 extension", "fanout S=5 M=20 service"):
        assert any(line.startswith(row) and "deliveries/s" in line for line in out.splitlines())
    assert "phx/nat" in out
    assert "INVALID" not in out
