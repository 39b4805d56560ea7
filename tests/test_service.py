"""The channels service (``jupyter channels serve``): its own authentication, Origin
rules, token reloading and graceful stop. The protocol itself is tested on both hosts
by the host-parametrized suites."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error

import pytest
from tornado.httpclient import HTTPClientError

from .service_support import SpawnedService, token_of, tokens_file_text
from .support import await_until


@pytest.fixture
def service(tmp_path):
    server = SpawnedService(tmp_path / "service").start()
    try:
        yield server
    finally:
        server.stop()


def _status(service: SpawnedService, path: str, **kwargs) -> tuple[int, dict]:
    try:
        return 200, service.rest("GET", path, **kwargs)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_two_tokens_are_two_identities_stamped_on_what_they_send(service):
    ada = await service.connect("ada")
    grace = await service.connect("grace")
    await ada.join("chat:who")
    await grace.join("chat:who")

    await grace.send(
        {"event": "message", "topic": "chat:who", "subject": "text", "payload": {},
         "from": {"user": "ada", "id": "x"}, "ref": "m"}
    )  # fmt: skip

    message = await ada.expect("message", topic="chat:who")
    assert message["from"]["user"] == "grace"
    assert message["from"]["name"] == "Grace Hopper"
    assert message["from"]["kind"] == "kernel"


async def test_a_query_parameter_naming_another_user_changes_nothing(service):
    ada = await service.connect("ada")
    await ada.join("chat:q")
    body = {"subject": "text", "payload": {"user": "grace"}}

    service.rest("POST", "api/channels/topics/chat:q/messages?user=grace&name=Grace", body)

    message = await ada.expect("message", topic="chat:q")
    assert message["from"]["user"] == "ada"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
async def test_a_missing_or_wrong_token_is_refused_403_on_rest_and_the_handshake(service, token):
    headers = {"Authorization": f"token {token}"} if token else {}
    from tornado.websocket import websocket_connect

    from .support import _request

    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(_request(service.ws_url, headers))
    code, body = _status(service, "api/channels/topics", token=token or "")

    assert refused.value.code == 403
    assert code == 403
    assert body["reason"] == "unauthorized"


async def test_a_token_removed_from_the_file_is_refused_and_its_connections_closed(service):
    ada = await service.connect("ada")
    grace = await service.connect("grace")
    await grace.join("chat:stay")
    remaining = {t: u for t, u in json.loads(tokens_file_text()).items() if u["username"] != "ada"}
    service.tokens_path.write_text(json.dumps(remaining))

    reason = await ada.closed()

    assert ada.conn.close_code == 4001, reason
    assert _status(service, "api/channels/topics", token=token_of("ada"))[0] == 403
    assert await grace.publish("chat:stay") == 1


async def test_a_browser_from_a_foreign_origin_is_refused_and_an_allowed_one_accepted(tmp_path):
    service = SpawnedService(
        tmp_path / "s", config='c.ChannelsService.allow_origins = ["http://lab.example:8888"]'
    ).start()
    try:
        with pytest.raises(HTTPClientError) as refused:
            await service.connect("ada", Origin="http://evil.example")
        allowed = await service.connect("ada", Origin="http://lab.example:8888")
        own = await service.connect("ada", Origin=f"http://127.0.0.1:{service.port}")
        await allowed.join("chat:o")
        await own.join("chat:o")
        assert refused.value.code == 403
        assert await allowed.publish("chat:o") == 1
        message = await own.expect("message", topic="chat:o")
        assert message["from"]["kind"] == "browser"
    finally:
        service.stop()


async def test_sigterm_lets_members_leave_and_keeps_what_was_stored(tmp_path):
    service = SpawnedService(tmp_path / "s").start()
    ada = await service.connect("ada")
    await ada.join("chat:kept")
    offset = await ada.publish("chat:kept")
    service.stop()

    assert await ada.closed()
    assert ada.conn.close_code == 1001
    again = SpawnedService(tmp_path / "s", port=service.port).start()
    try:
        page = again.rest("GET", "api/channels/topics/chat:kept/messages")
        assert page["offset"] == offset == 1
        assert "stopped" in service.log_path.read_text()
    finally:
        again.stop()


def test_the_service_runs_without_jupyter_server_in_its_process():
    script = (
        "import sys, jupyter_channels.service, jupyter_channels.edges.service\n"
        "print([m for m in sys.modules if m.startswith('jupyter_server')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


async def test_the_service_logs_in_jupyters_format_without_tokens(service):
    _status(service, f"api/channels/topics?token={token_of('grace')}&limit=x")
    await await_until(lambda: "limit=x" in service.log_path.read_text())

    log = service.log_path.read_text()
    assert "[I " in log
    assert "jupyter channels serve" in log
    assert token_of("grace") not in log
    assert "token=[secret]" in log
