"""Discovery: which endpoint and token the client uses, and in what order it looks."""

from __future__ import annotations

import json
import os
import socket

import pytest

import jupyter_channels as jc
from jupyter_channels.client.discovery import resolve, websocket_url

from ..runtime_files import stale_server_file, write_server_file
from ..support import free_port
from .conftest import DISCOVERY_ENV


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No discovery variables, and an empty runtime dir of our own."""
    for name in DISCOVERY_ENV:
        monkeypatch.delenv(name, raising=False)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    return runtime


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://localhost:8888/", "ws://localhost:8888/api/channels/websocket"),
        ("http://localhost:8888", "ws://localhost:8888/api/channels/websocket"),
        (
            "https://hub.example.org/user/ada/",
            "wss://hub.example.org/user/ada/api/channels/websocket",
        ),
        ("http://127.0.0.1:9/user/ada", "ws://127.0.0.1:9/user/ada/api/channels/websocket"),
        ("http://127.0.0.1:9/a%40b/", "ws://127.0.0.1:9/a%40b/api/channels/websocket"),
        ("ws://127.0.0.1:9/api/channels/websocket", "ws://127.0.0.1:9/api/channels/websocket"),
        ("wss://h/user/ada/api/channels/websocket", "wss://h/user/ada/api/channels/websocket"),
        ("ws://127.0.0.1:9/api/channels/websocket/", "ws://127.0.0.1:9/api/channels/websocket"),
        ("http://localhost:8888/lab?token=abc", "ws://localhost:8888/lab/api/channels/websocket"),
    ],
)
def test_a_server_url_is_normalized_to_the_channels_endpoint(given, expected):
    assert websocket_url(given) == expected


@pytest.mark.parametrize("given", ["localhost:8888", "ftp://localhost/", "http:///nohost", ""])
def test_something_that_is_not_a_server_url_is_refused_with_a_value_error(given):
    with pytest.raises(ValueError, match="not a server URL"):
        websocket_url(given)


def test_explicit_arguments_come_before_the_environment(clean_env, monkeypatch):
    monkeypatch.setenv("JUPYTER_CHANNELS_URL", "ws://env-host:1/api/channels/websocket")
    monkeypatch.setenv("JUPYTER_CHANNELS_TOKEN", "env-token")
    endpoint = resolve("http://arg-host:2/base/", "arg-token")
    assert endpoint.url == "ws://arg-host:2/base/api/channels/websocket"
    assert endpoint.token == "arg-token"
    assert endpoint.source == "arguments"


def test_a_token_in_the_url_is_used_when_none_is_given(clean_env):
    endpoint = resolve("http://arg-host:2/?token=from-url")
    assert endpoint.url == "ws://arg-host:2/api/channels/websocket"
    assert endpoint.token == "from-url"


def test_the_environment_comes_before_the_parent_server(clean_env, monkeypatch):
    (clean_env / "jpserver-4242.json").write_text(
        json.dumps({"url": "http://parent-host:3/", "token": "parent-token"})
    )
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    monkeypatch.setenv("JUPYTER_CHANNELS_URL", "ws://env-host:1/api/channels/websocket")
    monkeypatch.setenv("JUPYTER_CHANNELS_TOKEN", "env-token")
    endpoint = resolve()
    assert endpoint.url == "ws://env-host:1/api/channels/websocket"
    assert endpoint.token == "env-token"
    assert endpoint.source == "$JUPYTER_CHANNELS_URL"


def test_an_explicit_token_overrides_the_environments_token(clean_env, monkeypatch):
    monkeypatch.setenv("JUPYTER_CHANNELS_URL", "ws://env-host:1/api/channels/websocket")
    monkeypatch.setenv("JUPYTER_CHANNELS_TOKEN", "env-token")
    assert resolve(token="mine").token == "mine"


def test_the_parent_servers_runtime_file_is_found_through_jpy_parent_pid(clean_env, monkeypatch):
    info = clean_env / "jpserver-4242.json"
    info.write_text(json.dumps({"url": "http://parent-host:3/user/ada/", "token": "parent-token"}))
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    endpoint = resolve()
    assert endpoint.url == "ws://parent-host:3/user/ada/api/channels/websocket"
    assert endpoint.token == "parent-token"
    assert endpoint.source == str(info)


def test_a_missing_runtime_file_is_named_in_server_not_found(clean_env, monkeypatch):
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    with pytest.raises(jc.ServerNotFound) as info:
        resolve()
    assert str(clean_env / "jpserver-4242.json") in str(info.value)


def test_no_server_at_all_raises_server_not_found_saying_what_was_tried_and_what_to_do(
    clean_env,
):
    with pytest.raises(jc.ServerNotFound) as info:
        resolve()
    message = str(info.value)
    # What was tried, in order ...
    assert message.index("no url argument") < message.index("$JUPYTER_CHANNELS_URL is not set")
    assert "$JPY_PARENT_PID is not set" in message
    # ... and how to pass a server.
    assert 'url="http://localhost:8888/"' in message
    assert "token=" in message
    assert isinstance(info.value, jc.ChannelError)


# -- Jupyter's runtime files: a script started from a terminal ---------------------------------


def accepting() -> socket.socket:
    """Something that accepts connections, standing in for a live server's port."""
    return socket.create_server(("127.0.0.1", 0))


def url_of(server: socket.socket) -> str:
    return f"http://127.0.0.1:{server.getsockname()[1]}/"


@pytest.fixture
def listener():
    with accepting() as server:
        yield url_of(server)


def test_without_env_the_newest_live_server_in_the_runtime_dir_is_used(clean_env):
    with accepting() as older, accepting() as newer:
        write_server_file(clean_env, os.getppid(), url_of(older), age=60, token="older")
        newest = write_server_file(clean_env, os.getpid(), url_of(newer), token="newest")

        endpoint = resolve()

        assert endpoint.url == websocket_url(url_of(newer))
    assert (endpoint.source, endpoint.token) == (str(newest), "newest")


def test_a_stale_runtime_file_newer_than_the_live_one_is_skipped(clean_env, listener):
    live = write_server_file(clean_env, os.getpid(), listener, age=60, token="live")
    stale_server_file(clean_env)

    endpoint = resolve()

    assert (endpoint.source, endpoint.token) == (str(live), "live")


def test_stale_runtime_files_are_named_in_server_not_found_with_their_pids(clean_env):
    dead = stale_server_file(clean_env)
    deaf = write_server_file(clean_env, os.getpid(), f"http://127.0.0.1:{free_port()}/")

    with pytest.raises(jc.ServerNotFound) as info:
        resolve()

    message = str(info.value)
    dead_pid = json.loads(dead.read_text())["pid"]
    assert f"{dead} is stale: its server (pid {dead_pid}) is not running" in message
    assert f"{deaf} is stale: nothing answers at" in message
    assert f"(pid {os.getpid()})" in message
    # Another program's files are left where they are.
    assert dead.exists()
    assert deaf.exists()


def test_a_missing_parent_server_file_falls_back_to_the_runtime_dir(
    clean_env, monkeypatch, listener
):
    live = write_server_file(clean_env, os.getpid(), listener)
    monkeypatch.setenv("JPY_PARENT_PID", "4242")

    assert resolve().source == str(live)


def test_an_empty_runtime_dir_is_named_in_server_not_found(clean_env):
    with pytest.raises(jc.ServerNotFound) as info:
        resolve()

    assert f"no jpserver-*.json server files in {clean_env}" in str(info.value)
