"""Clients and tools pointed at the channels service: the Python client, the CLI, and a
Jupyter server whose kernels reach the service (``ChannelsApp.service_url``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from jupyter_client import BlockingKernelClient
from traitlets import TraitError

import jupyter_channels as jc

from .client.conftest import DISCOVERY_ENV
from .client.test_kernels import TIMEOUT, run
from .service_support import SpawnedService, token_of
from .support import SpawnedServer, spawn, wait_until

CLI = [sys.executable, "-m", "jupyter_channels.cli"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedService]:
    started = SpawnedService(tmp_path_factory.mktemp("service")).start()
    try:
        yield started
    finally:
        started.stop()


def stored(service: SpawnedService, topic: str) -> list[dict]:
    """The topic's messages as the service's REST API reads them back."""
    return list(service.rest("GET", f"api/channels/topics/{topic}/messages")["messages"])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISCOVERY_ENV}
    return {**env, **extra}


# -- the Python client ----------------------------------------------------------------------


def test_the_python_client_reaches_a_service_by_url_and_token_as_two_users(service):
    with (
        jc.connect(service.http_url, token_of("ada")) as ada,
        jc.connect(service.ws_url, token_of("grace")) as grace,
    ):
        ada_room = ada.join("svc:client")
        grace_room = grace.join("svc:client")
        offset = grace_room.send("text", {"text": "from grace"})

        wait_until(lambda: [m.offset for m in ada_room.messages] == [offset])
        (message,) = ada_room.messages
        assert message.sender is not None
        assert message.sender["user"] == "grace"
    assert [m["from"]["user"] for m in stored(service, "svc:client")] == ["grace"]


def test_the_python_client_finds_a_service_in_the_environment(service):
    script = (
        "import jupyter_channels as jc\n"
        "print(jc.join('svc:env').send('text', {'text': 'from the env'}))\n"
    )
    env = clean_env(JUPYTER_CHANNELS_URL=service.http_url, JUPYTER_CHANNELS_TOKEN=token_of("alan"))
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (message,) = stored(service, "svc:env")
    assert message["offset"] == int(done.stdout)
    assert message["from"]["user"] == "alan"


# -- the CLI ---------------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or clean_env(),
    )


def test_the_cli_sends_reads_and_lists_at_a_service_given_url_and_token(service):
    at = ["--url", service.http_url, "--token", token_of("grace")]

    sent = cli("send", "svc:cli", "text", '{"text": "hi"}', *at)

    assert sent.returncode == 0, sent.stderr
    rows = json.loads(cli("topics", "--json", *at).stdout)
    assert {"topic": "svc:cli", "members": 0, "offset": int(sent.stdout)} in rows
    assert [m["from"]["user"] for m in stored(service, "svc:cli")] == ["grace"]


def test_the_cli_finds_a_service_in_the_environment(service):
    env = clean_env(JUPYTER_CHANNELS_URL=service.http_url, JUPYTER_CHANNELS_TOKEN=token_of("ada"))

    sent = cli("send", "svc:cli-env", "text", '{"text": "hi"}', env=env)

    assert sent.returncode == 0, sent.stderr
    assert [m["from"]["user"] for m in stored(service, "svc:cli-env")] == ["ada"]


def test_the_cli_with_a_wrong_token_is_refused_by_the_service(service):
    refused = cli("topics", "--url", service.http_url, "--token", "not-a-token")

    assert refused.returncode == 1
    assert "403" in refused.stderr


# -- a Jupyter server pointing at the service -----------------------------------------------


@pytest.fixture(scope="module")
def client_server(
    service: SpawnedService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpawnedServer]:
    """A Jupyter server whose users and kernels use grace's token at the service."""
    root = tmp_path_factory.mktemp("client-server")
    server = spawn(
        root,
        root / "history.sqlite",
        service_url=service.http_url,
        service_token=token_of("grace"),
    )
    server.ready_path = "api/status"  # it has no channels endpoint to wait on
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def kernel_of(server: SpawnedServer) -> Iterator[BlockingKernelClient]:
    """A kernel started through the server's REST API, so it inherits what it exported."""
    kernel = server.rest("POST", "api/kernels", {"name": "python3"})
    kc = BlockingKernelClient(
        connection_file=str(server.root / "runtime" / f"kernel-{kernel['id']}.json")
    )
    kc.load_connection_file()
    # No heartbeat: a kernel still importing on a busy machine does not answer it, which
    # wait_for_ready would take for a dead kernel.
    kc.start_channels(hb=False)
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield kc
    finally:
        kc.stop_channels()
        server.rest("DELETE", f"api/kernels/{kernel['id']}")


def test_a_kernel_of_a_server_pointing_at_a_service_joins_it_with_no_arguments(
    service: SpawnedService, client_server: SpawnedServer
):
    with kernel_of(client_server) as kc:
        out = run(
            kc,
            "import os, jupyter_channels as jc\n"
            "print(jc.join('svc:kernel').send('text', {'text': 'from a kernel'}))\n"
            "print(os.environ['JUPYTER_CHANNELS_URL'])\n",
        )
        offset, url = out.split()
        assert url == service.ws_url

    (message,) = stored(service, "svc:kernel")
    assert message["offset"] == int(offset)
    assert message["payload"] == {"text": "from a kernel"}
    assert message["from"]["user"] == "grace"  # the service_token's identity


def test_a_server_pointing_at_a_service_hosts_no_channels_endpoint(client_server: SpawnedServer):
    with pytest.raises(urllib.error.HTTPError) as missing:
        client_server.rest("GET", "api/channels/topics")
    assert missing.value.code == 404


def test_a_service_url_that_is_not_http_is_refused_with_its_reason():
    from jupyter_channels.app import ChannelsApp

    with pytest.raises(TraitError, match=r"must be an http\(s\) URL, not 'ws://example.org/'"):
        ChannelsApp(service_url="ws://example.org/")


def test_a_server_takes_its_service_url_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    from jupyter_channels.app import ChannelsApp

    monkeypatch.setenv("JUPYTER_CHANNELS_SERVICE_URL", "https://channels.example.org/base")

    assert ChannelsApp().service_url == "https://channels.example.org/base/"


def test_without_a_service_token_the_server_exports_none_to_kernels(
    monkeypatch: pytest.MonkeyPatch,
):
    from jupyter_channels.app import ChannelsApp

    for name in DISCOVERY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_CHANNELS_TOKEN", "left over from elsewhere")
    monkeypatch.setenv("JUPYTER_CHANNELS_SERVICE_URL", "")

    ChannelsApp(service_url="https://channels.example.org/")._export_env()

    assert os.environ["JUPYTER_CHANNELS_URL"] == (
        "wss://channels.example.org/api/channels/websocket"
    )
    assert os.environ["JUPYTER_CHANNELS_SERVICE_URL"] == "https://channels.example.org/"
    assert "JUPYTER_CHANNELS_TOKEN" not in os.environ
