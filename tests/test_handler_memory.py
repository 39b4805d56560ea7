"""What an open connection's handler keeps once the WebSocket handshake is over: not the
request's or the response's headers, not the cookies, no ping task of its own, and not
the seven methods Tornado sets on the instance (each is memory held for every idle
connection; docs/performance.md). The request line stays for the log, and the connection works."""

from __future__ import annotations

import asyncio

import pytest

from jupyter_channels.edges.socket import StreamTransport

NOT_AFTER_THE_HANDSHAKE = ("write", "redirect", "set_header", "set_cookie", "set_status",
                           "flush", "finish")  # fmt: skip


def handler_of(channels_app):
    (client,) = channels_app.hub.clients.values()
    transport = client._transport
    assert isinstance(transport, StreamTransport)
    return transport.handler


async def test_an_open_connection_keeps_no_handshake_headers_or_cookies(channels_ws, channels_app):
    ada = await channels_ws()
    await ada.join("chat:memory")
    handler = handler_of(channels_app)

    assert dict(handler.request.headers) == {}
    assert dict(handler._headers) == {}
    assert "_cookies" not in vars(handler.request)
    assert "_new_cookie" not in vars(handler)  # the login cookie Jupyter set on the reply
    # What the log names stays.
    assert handler.request.method == "GET"
    assert handler.request.path.endswith("/api/channels/websocket")
    assert handler.request.remote_ip
    # And the connection still works both ways.
    offset = await ada.publish("chat:memory", "text", {"n": 1})
    (message,) = await ada.messages(1, "chat:memory")
    assert message["offset"] == offset


async def test_an_open_connection_has_no_ping_task_of_its_own(channels_ws, channels_app):
    await channels_ws()
    handler_of(channels_app)
    pinging = [t for t in asyncio.all_tasks() if "periodic_ping" in repr(t.get_coro())]
    assert pinging == []  # the hub's heartbeat pings every connection


async def test_an_open_handlers_http_methods_refuse_without_instance_attributes(
    channels_ws, channels_app
):
    await channels_ws()
    handler = handler_of(channels_app)

    # Seven keys fewer than Tornado's own upgrade leaves (whether the dict then shares
    # its keys with the class's other instances depends on which requests came first).
    assert not set(NOT_AFTER_THE_HANDSHAKE) & set(vars(handler))
    for name in NOT_AFTER_THE_HANDSHAKE:
        with pytest.raises(RuntimeError, match="not supported for Web Sockets"):
            getattr(handler, name)("x")
