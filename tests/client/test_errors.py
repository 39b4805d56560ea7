"""The three outcomes of a call are distinct: an answer, an error reply, a timeout; and
failing to find or reach a server says why. Blocking client, spawned server."""

from __future__ import annotations

import pytest

import jupyter_channels as jc

from ..support import free_port
from .conftest import DISCOVERY_ENV


def test_a_rejected_join_raises_join_rejected_carrying_the_channels_detail(spawned_server):
    with jc.connect(spawned_server.http_url, spawned_server.token) as conn:
        with pytest.raises(jc.JoinRejected) as info:
            conn.join("invite:club")
        assert info.value.code == "join_rejected"
        assert info.value.detail == "invite required"
        assert isinstance(info.value, jc.ChannelError)

        # The refused topic is not half-joined: joining with the invite works.
        room = conn.join("invite:club", params={"invite": "ok"})
        assert room.joined
        assert room.send("text", {"text": "in"}) >= 1


@pytest.mark.parametrize("given_to", ["send", "connect"])
def test_a_reply_that_never_comes_raises_reply_timeout_after_the_configured_time(
    spawned_server, given_to
):
    # Slow's handle_message sleeps 30 s, longer than the server's own 10 s hook timeout.
    conn_options = {"timeout": 0.5} if given_to == "connect" else {}
    send_options = {"timeout": 0.5} if given_to == "send" else {}
    with jc.connect(spawned_server.http_url, spawned_server.token, **conn_options) as conn:
        room = conn.join(f"slow:{given_to}")
        with pytest.raises(jc.ReplyTimeout) as info:
            room.send("text", {"text": "anyone?"}, **send_options)
        # The client's own timeout, not the server's "did not answer within 10 s".
        assert info.value.code == "timeout"
        assert info.value.detail == "no reply within 0.5 s"
        assert isinstance(info.value, TimeoutError)

        # The connection carries on.
        other = conn.join(f"chat:after-timeout-{given_to}")
        assert other.send("text", {"text": "still here"}) == 1


@pytest.mark.parametrize(
    "call",
    [jc.connect, lambda: jc.join("chat:nowhere"), jc.aconnect],
    ids=["connect", "join", "aconnect"],
)
def test_no_server_found_raises_server_not_found_naming_what_was_tried(monkeypatch, call):
    for name in DISCOVERY_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(jc.ServerNotFound) as info:
        call()
    message = str(info.value)
    assert "JUPYTER_CHANNELS_URL" in message
    assert "JPY_PARENT_PID" in message
    assert "url=" in message


def test_a_wrong_token_raises_an_unauthorized_channel_error(spawned_server):
    with pytest.raises(jc.ChannelError) as info:
        jc.connect(spawned_server.http_url, "not-the-token")
    assert info.value.code == "unauthorized"
    assert spawned_server.ws_url in info.value.detail


def test_a_port_nobody_listens_on_raises_connection_lost():
    with pytest.raises(jc.ConnectionLost) as info:
        jc.connect(f"http://127.0.0.1:{free_port()}/", "token", reconnect=False)
    assert info.value.code == "unavailable"
