"""Fixtures: a real Jupyter server with the extension (in-process or spawned) and a WS client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .channels_fixture import CHANNELS, with_test_users
from .redis_support import RedisServer
from .support import ChannelsClient, SpawnedServer, connect_factory, spawn

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def channels_config() -> dict:
    """``ChannelsApp`` traits for the test server; override in a test module (or with
    :func:`tests.support.config`) to change them."""
    return {"channels": dict(CHANNELS)}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One ``redis-server`` for the whole session (skipped without it, failed in CI)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "redis"])
def broker_url(request) -> str:
    """Every test of the in-process server runs on both brokers: the embedded one
    (``""``) and Redis (emptied first)."""
    if request.param == "local":
        return ""
    redis = request.getfixturevalue("redis_server")
    redis.client().flushdb()
    return redis.url()


@pytest.fixture
def jp_server_config(tmp_path, channels_config, broker_url):
    return with_test_users(
        {
            "ServerApp": {
                "jpserver_extensions": {
                    "jupyter_channels": True,
                    "jupyter_server_terminals": False,
                },
                "allow_unauthenticated_access": False,
            },
            "ChannelsApp": {
                "history_path": str(tmp_path / "history.sqlite"),
                "broker_url": broker_url,
                **channels_config,
            },
        }
    )


@pytest.fixture
def channels_app(jp_serverapp):
    """The running ``ChannelsApp``."""
    return jp_serverapp.extension_manager.extension_apps["jupyter_channels"].pop()


@pytest.fixture
def channels_ws(jp_ws_fetch, jp_serverapp):
    """``await channels_ws()`` opens a connection to the channels endpoint."""
    return connect_factory(jp_ws_fetch)


__all__ = ["ChannelsClient"]


@pytest.fixture(scope="session")
def spawned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    """One spawned server shared by the tests that only need some server to talk to;
    each of them uses its own topics."""
    root = tmp_path_factory.mktemp("spawned")
    server = spawn(root, root / "history.sqlite").start()
    try:
        yield server
    finally:
        server.stop()
