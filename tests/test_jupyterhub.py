"""The channels service on a real JupyterHub (tests/hub_support.py): identities, scopes and
permissions come from the hub; kernels of users' servers connect as their user.

Browser tests of the same hub are in tests/widget/test_browser_hub.py.
"""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from .hub_support import SCOPE, SpawnedHub, UserKernel, require
from .support import ChannelsClient


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedHub]:
    require()
    spawned = SpawnedHub(Path(tmp_path_factory.mktemp("hub")))
    spawned.start()
    try:
        for user in ("alice", "bob"):
            spawned.start_server(user)
        yield spawned
    finally:
        spawned.stop()


async def connect(hub: SpawnedHub, token: str, query: str = "", **headers: str) -> ChannelsClient:
    url = hub.service_ws + (f"?{query}" if query else "")
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}", **headers},
        connect_timeout=30,
        request_timeout=30,
    )
    return ChannelsClient(await websocket_connect(request))


def refused_status(call: Any) -> int:
    try:
        call()
    except urllib.error.HTTPError as e:
        return e.code
    raise AssertionError("the request was accepted")


async def handshake_status(hub: SpawnedHub, token: str) -> int:
    try:
        conn = await connect(hub, token)
    except HTTPClientError as e:
        return e.code
    conn.conn.close()
    raise AssertionError("the handshake was accepted")


async def run_in(kernel: UserKernel, code: str) -> Any:
    """Run ``code`` whose last line prints one JSON value; that value."""
    return json.loads((await kernel.run(code)).strip().splitlines()[-1])


async def test_a_kernel_sends_with_no_arguments_as_its_hub_user(hub: SpawnedHub) -> None:
    kernel = await hub.kernel("alice")
    try:
        offset = await run_in(
            kernel,
            "import json, jupyter_channels as jc\n"
            "sub = jc.join('chat:kernels')\n"
            "print(json.dumps(sub.send('text', {'text': 'hello from the kernel'})))",
        )
    finally:
        await kernel.shutdown()
    page = hub.service_rest(
        "GET", "api/channels/topics/chat:kernels/messages", token=hub.token_for("bob")
    )
    [message] = [m for m in page["messages"] if m["offset"] == offset]
    assert message["payload"] == {"text": "hello from the kernel"}
    assert message["from"]["user"] == "alice"
    assert message["from"]["kind"] == "kernel"


async def test_the_kernel_presents_its_servers_hub_token_and_hands_the_page_none(
    hub: SpawnedHub,
) -> None:
    kernel = await hub.kernel("alice")
    try:
        seen = await run_in(
            kernel,
            "import json, os\n"
            "from jupyter_channels.client.discovery import hub_login_path, resolve\n"
            "e = resolve()\n"
            "hub_token = e.token == os.environ['JUPYTERHUB_API_TOKEN']\n"
            "channels_token = os.environ.get('JUPYTER_CHANNELS_TOKEN')\n"
            "print(json.dumps({'url': e.url, 'hub_token': hub_token,"
            " 'channels_token': channels_token, 'login': hub_login_path(e)}))",
        )
    finally:
        await kernel.shutdown()
    assert seen == {
        "url": hub.service_ws,
        "hub_token": True,
        "channels_token": None,
        "login": "/services/channels/api/channels/login",
    }


async def test_frames_and_parameters_naming_someone_else_change_nothing(hub: SpawnedHub) -> None:
    alice = hub.token_for("alice")
    conn = await connect(hub, alice, "user=bob&username=bob", **{"X-Forwarded-User": "bob"})
    try:
        await conn.join("chat:forgery", payload={"user": "bob", "name": "bob"})
        await conn.send(
            {
                "event": "message",
                "topic": "chat:forgery",
                "subject": "text",
                "payload": {"text": "it is me, bob"},
                "from": {"user": "bob", "name": "bob", "kind": "browser"},
                "user": "bob",
                "ref": "1",
            }
        )
        await conn.expect("reply", ref="1")
        [message] = await conn.messages(1, "chat:forgery")
        assert message["from"]["user"] == "alice"
    finally:
        conn.conn.close()
    page = hub.service_rest(
        "GET", "api/channels/topics/chat:forgery/messages", token=hub.token_for("bob")
    )
    assert [m["from"]["user"] for m in page["messages"]] == ["alice"]


async def test_a_token_without_the_services_scope_and_a_garbage_token_are_refused(
    hub: SpawnedHub,
) -> None:
    narrow = hub.token_for("alice", ["read:users:name!user=alice"])
    for token in (narrow, "garbage-token-0123456789abcdef", hub.admin_token):
        assert (
            refused_status(lambda t=token: hub.service_rest("GET", "api/channels/topics", token=t))
            == 403
        )
        assert await handshake_status(hub, token) == 403
    # The same user with the scope is let in: the refusal was the scope's.
    assert hub.service_rest("GET", "api/channels/topics", token=hub.token_for("alice")) is not None
    assert SCOPE == "access:services!service=channels"


async def test_direct_requests_to_the_service_are_authenticated_by_the_hub_too(
    hub: SpawnedHub,
) -> None:
    assert (
        refused_status(
            lambda: hub.service_rest(
                "GET", "api/channels/topics", token="garbage-token-0123456789abcdef", direct=True
            )
        )
        == 403
    )
    topics = hub.service_rest("GET", "api/channels/topics", token=hub.token_for("bob"), direct=True)
    assert isinstance(topics, list)


async def test_permissions_follow_the_hubs_groups(hub: SpawnedHub) -> None:
    alice, bob = await hub.kernel("alice"), await hub.kernel("bob")
    try:
        send = (
            "import json, jupyter_channels as jc\n"
            "from jupyter_channels import ChannelError\n"
            "try:\n"
            "    sub = jc.join({topic!r})\n"
            "    print(json.dumps(['ok', sub.send('text', {{'text': 'x'}})]))\n"
            "except ChannelError as e:\n"
            "    print(json.dumps([e.code, e.detail]))\n"
        )
        # bob is a teacher: he announces; alice may read announcements but not send.
        assert (await run_in(bob, send.format(topic="announce:class")))[0] == "ok"
        reason, detail = await run_in(alice, send.format(topic="announce:class"))
        assert reason == "unauthorized", detail
        assert "announce:*" in detail
        # Group work: alice is not in teachers.
        reason, _ = await run_in(alice, send.format(topic="group:teachers:notes"))
        assert reason == "unauthorized"
        assert (await run_in(bob, send.format(topic="group:teachers:notes")))[0] == "ok"
        # bob's inbox is his to read: alice can neither join it nor read it over REST.
        assert (await run_in(alice, send.format(topic="user:bob:inbox")))[0] in (
            "ok",
            "unauthorized",
        )
        status = await run_in(
            alice,
            "import json, os, urllib.request, urllib.error\n"
            "from jupyter_channels.client.discovery import http_url\n"
            "req = urllib.request.Request(http_url(os.environ['JUPYTER_CHANNELS_URL'])"
            " + 'api/channels/topics/user:bob:inbox/messages',"
            " headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
            "try:\n"
            "    urllib.request.urlopen(req); print(json.dumps([200, None]))\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(json.dumps([e.code, json.loads(e.read())['reason']]))\n",
        )
        assert status == [403, "unauthorized"]
        inbox = hub.service_rest(
            "GET", "api/channels/topics/user:bob:inbox/messages", token=hub.token_for("bob")
        )
        assert isinstance(inbox["messages"], list)
    finally:
        await alice.shutdown()
        await bob.shutdown()


async def test_token_lookups_are_cached_not_asked_of_the_hub_per_connection(
    hub: SpawnedHub,
) -> None:
    def asked() -> int:
        """Whoami requests made to the hub with one of bob's tokens, so far."""
        log = hub.log_path.read_text(errors="replace")
        return sum("GET /hub/api/user (bob@" in line for line in log.splitlines())

    token = hub.token_for("bob")
    before = asked()
    for _ in range(5):
        conn = await connect(hub, token)
        await conn.join("chat:cache")
        conn.conn.close()
    # Five connections with one token: the hub was asked who it is once.
    assert asked() - before == 1


async def test_the_cli_and_share_inside_a_users_server_need_no_arguments(hub: SpawnedHub) -> None:
    kernel = await hub.kernel("alice")
    try:
        # The CLI as a terminal of her server runs it: the server's environment, no flags.
        offset = await run_in(
            kernel,
            "import json, subprocess, sys\n"
            "done = subprocess.run([sys.executable, '-m', 'jupyter_channels.cli', 'send',"
            " 'chat:tools', 'text', json.dumps({'text': 'from the CLI'})],"
            " capture_output=True, text=True)\n"
            "print(json.dumps(int(done.stdout.strip()) if done.returncode == 0 else done.stderr))",
        )
        assert isinstance(offset, int), offset
        await kernel.run("%load_ext jupyter_channels")
        await kernel.run("%%share chat:tools\nanswer = 6 * 7\nprint(answer)")
    finally:
        await kernel.shutdown()
    page = hub.service_rest(
        "GET", "api/channels/topics/chat:tools/messages", token=hub.token_for("bob")
    )
    cli, shared = page["messages"]
    assert (cli["payload"], cli["from"]["user"]) == ({"text": "from the CLI"}, "alice")
    assert shared["from"]["user"] == "alice"
    assert shared["payload"]["source"] == "answer = 6 * 7\nprint(answer)"


def test_the_login_cookies_secret_is_kept_private_for_restarts(hub: SpawnedHub) -> None:
    secret = hub.root / "channels_cookie_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(secret.read_text())) == 32
