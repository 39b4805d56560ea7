"""Jupyter's authentication, Authorizer and Origin rules on every endpoint; the kernel token."""

from __future__ import annotations

import json
import os
import warnings

import pytest
from jupyter_server.auth import Authorizer
from jupyter_server.utils import JupyterServerAuthWarning
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.web import RequestHandler
from tornado.websocket import websocket_connect

from jupyter_channels.constants import ENV_TOKEN, ENV_URL
from jupyter_channels.edges.jupyter import handlers

from .support import ChannelsClient


async def _ws(jp_ws_fetch, **kwargs):
    return ChannelsClient(await jp_ws_fetch("api", "channels", "websocket", **kwargs))


async def test_no_credentials_gives_403_on_every_endpoint(jp_ws_fetch, jp_fetch):
    with pytest.raises(HTTPClientError) as e:
        await _ws(jp_ws_fetch, headers={"Authorization": ""})
    assert e.value.code == 403
    for path in (("topics",), ("topics", "chat:x", "messages"), ("topics", "chat:x", "presence")):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("api", "channels", *path, headers={"Authorization": ""})
        assert e.value.code == 403
        assert json.loads(e.value.response.body)["reason"] == "unauthorized"
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "api", "channels", "topics", "chat:x", "messages",
            method="POST", body=json.dumps({"subject": "text"}), headers={"Authorization": ""},
        )  # fmt: skip
    assert e.value.code == 403


async def _login_cookie(jp_fetch, jp_serverapp) -> str:
    """A real login cookie: token-in-URL authentication sets it, as in a browser."""
    response = await jp_fetch(
        "api", "channels", "topics",
        params={"token": jp_serverapp.identity_provider.token}, headers={"Authorization": ""},
    )  # fmt: skip
    cookies = response.headers.get_list("Set-Cookie")
    login = [c.split(";")[0] for c in cookies if c.startswith("username-")]
    assert login, cookies
    return login[0]


async def test_a_cookie_handshake_from_a_foreign_origin_is_refused(
    jp_fetch, jp_serverapp, jp_http_port, jp_base_url
):
    cookie = await _login_cookie(jp_fetch, jp_serverapp)  # issued for 127.0.0.1
    host = f"127.0.0.1:{jp_http_port}"
    url = f"ws://{host}{jp_base_url}api/channels/websocket"

    async def handshake(origin: str) -> ChannelsClient:
        request = HTTPRequest(url, headers={"Cookie": cookie, "Origin": origin})
        return ChannelsClient(await websocket_connect(request))

    same = await handshake(f"http://{host}")
    reply = await same.request({"event": "heartbeat"})
    assert reply["payload"]["status"] == "ok"
    same.close()

    with pytest.raises(HTTPClientError) as e:
        await handshake("http://evil.example")
    assert e.value.code == 403


async def test_a_cookie_post_without_xsrf_is_refused(jp_fetch, jp_serverapp):
    cookie = await _login_cookie(jp_fetch, jp_serverapp)
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "api", "channels", "topics", "chat:x", "messages", method="POST",
            body=json.dumps({"subject": "text", "payload": {}}),
            headers={"Authorization": "", "Cookie": cookie},
        )  # fmt: skip
    assert e.value.code in (403, 404)


async def test_the_kernel_token_opens_the_channels_endpoint_as_a_kernel(
    jp_ws_fetch, jp_fetch, jp_serverapp, jp_http_port, jp_base_url
):
    token = os.environ[ENV_TOKEN]
    assert (
        os.environ[ENV_URL] == f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/channels/websocket"
    )
    assert token != jp_serverapp.identity_provider.token

    kernel = await _ws(jp_ws_fetch, headers={"Authorization": f"token {token}"})
    await kernel.join("metrics:run1")
    await kernel.publish("metrics:run1", "loss", {"value": 0.5})
    (frame,) = await kernel.messages(1)
    assert frame["from"]["kind"] == "kernel"
    assert frame["from"]["user"] == "kernel"

    named = await _ws(
        jp_ws_fetch, headers={"Authorization": ""}, params={"token": token, "name": "trainer"}
    )
    await named.join("metrics:run1")
    await kernel.publish("metrics:run1", "loss", {"value": 0.4})
    await named.publish("metrics:run1", "loss", {"value": 0.3})
    frames = await named.messages(2)
    assert frames[-1]["from"]["name"] == "trainer"

    response = await jp_fetch(
        "api", "channels", "topics", "metrics:run1", "messages",
        headers={"Authorization": f"token {token}"},
    )  # fmt: skip
    assert len(json.loads(response.body)["messages"]) == 3


async def test_the_kernel_token_is_refused_everywhere_else(jp_fetch):
    token = os.environ[ENV_TOKEN]
    for path in (("api", "contents"), ("api", "kernels"), ("api", "sessions")):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*path, headers={"Authorization": f"token {token}"})
        assert e.value.code == 403


async def test_a_wrong_token_is_refused(jp_ws_fetch):
    with pytest.raises(HTTPClientError) as e:
        await _ws(jp_ws_fetch, headers={"Authorization": "token not-the-kernel-token"})
    assert e.value.code == 403


def test_no_endpoint_raises_the_unauthenticated_endpoint_warning(jp_serverapp):
    assert jp_serverapp.web_app.settings["allow_unauthenticated_access"] is False
    rules = [(f"/test-auth-warning{pattern}", handler) for pattern, handler in handlers()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jp_serverapp.web_app.add_handlers(".*$", rules)
    assert not [w for w in caught if issubclass(w.category, JupyterServerAuthWarning)]

    class Undecorated(RequestHandler):
        def get(self) -> None:
            self.finish("open")

    # The same check does flag an endpoint without authentication.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jp_serverapp.web_app.add_handlers(".*$", [("/test-auth-undecorated", Undecorated)])
    assert [w for w in caught if issubclass(w.category, JupyterServerAuthWarning)]


class ReadOnlyAuthorizer(Authorizer):
    """Allows reading channels, nothing else on them."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "channels" or action == "read"


class NoChannelsAuthorizer(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        return resource != "channels"


def _use_authorizer(serverapp, cls: type[Authorizer]) -> None:
    settings = serverapp.web_app.settings
    settings["authorizer"] = cls(identity_provider=settings["identity_provider"])


async def test_the_authorizer_decides_reading_and_writing(jp_ws_fetch, jp_fetch, jp_serverapp):
    _use_authorizer(jp_serverapp, ReadOnlyAuthorizer)
    reader = await _ws(jp_ws_fetch)
    await reader.join("chat:ro")
    reply = await reader.request(
        {"event": "message", "topic": "chat:ro", "subject": "text", "payload": {}}
    )
    assert reply["payload"]["response"]["reason"] == "unauthorized"
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(
            "api", "channels", "topics", "chat:ro", "messages", method="POST",
            body=json.dumps({"subject": "text", "payload": {}}),
        )  # fmt: skip
    assert e.value.code == 403
    assert (await jp_fetch("api", "channels", "topics")).code == 200


async def test_an_authorizer_can_refuse_the_channels_resource(jp_ws_fetch, jp_fetch, jp_serverapp):
    _use_authorizer(jp_serverapp, NoChannelsAuthorizer)
    with pytest.raises(HTTPClientError) as e:
        await _ws(jp_ws_fetch)
    assert e.value.code == 403
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "channels", "topics")
    assert e.value.code == 403
