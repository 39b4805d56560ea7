"""Fixtures: a real Jupyter server with the extension (in-process or spawned) and a WS client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import hosts
from .channels_fixture import CHANNELS, with_test_users
from .redis_support import RedisServer
from .support import ChannelsClient, SpawnedServer, connect_factory, spawn

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def pytest_configure(config: pytest.Config) -> None:
    hosts.configure(config)


@pytest.hookimpl(tryfirst=True)  # before pytest reads the parametrize marks
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    hosts.every_host(metafunc)


@pytest.fixture
def channels_config() -> dict:
    """``ChannelsApp`` traits for the test server; override in a test module (or with
    :func:`tests.support.config`) to change them. Presence diffs go out one per join and
    leave, so tests read them in order (tests/test_presence_batching.py batches them)."""
    return {"channels": dict(CHANNELS), "presence_interval": 0}


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
def host() -> str:
    """Which host ``channels_ws`` and ``channels_fetch`` talk to: the extension, unless the
    test runs on every host (tests/hosts.py)."""
    return "extension"


@pytest.fixture
def channels_ws(request, host, broker_url, channels_config):
    """``await channels_ws()`` opens a connection to the channels endpoint of ``host``
    (``channels_ws(**as_user("grace"))``: as grace). Both hosts are configured by
    ``broker_url`` and ``channels_config``, requested here so that tests parametrize them."""
    if host == "service":
        return hosts.service_connect_factory(request.getfixturevalue("channels_service"))
    request.getfixturevalue("jp_serverapp")
    return connect_factory(request.getfixturevalue("jp_ws_fetch"))


@pytest.fixture
def channels_fetch(request, host, broker_url, channels_config):
    """``await channels_fetch(*path, **jp_fetch_kwargs)``: a request below ``api/channels/``
    of ``host``, as ``jp_fetch`` makes it (``**as_user("grace")``: as grace)."""
    if host == "service":
        return hosts.service_fetch_factory(request.getfixturevalue("channels_service"))
    jp_fetch = request.getfixturevalue("jp_fetch")
    return lambda *path, **kwargs: jp_fetch("api", "channels", *path, **kwargs)


@pytest.fixture
def channels_service(tmp_path, channels_config):
    """``jupyter channels serve`` with ``channels_config``, fresh for the test."""
    service = hosts.start_service(tmp_path / "service", channels_config)
    try:
        yield service
    finally:
        service.stop()


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
