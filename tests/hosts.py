"""The hosts of the channels endpoint that one protocol suite runs against.

``extension``: the server extension in an in-process Jupyter server (on the
embedded broker and on Redis). ``service``: ``jupyter channels serve`` as a
subprocess started for the test with the test's ``ChannelsApp`` traits (on the
embedded broker: Redis behind the service is tested by test_service_replicas.py).

A module opts in with ``pytestmark = pytest.mark.on_every_host``; then each of
its tests that talks to the host through ``channels_ws`` or ``channels_fetch``
runs on both hosts, except those that reach into the in-process server (its
fixtures below, or a test marked ``extension_only(why)``): they stay on the
extension. A test that starts its own server process is marked
``each_spawned_host`` and starts it with ``spawn(host, ...)``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.escape import url_escape
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from .channels_fixture import USER_HEADER, USERS
from .service_support import SpawnedService, token_of
from .support import ChannelsClient, SpawnedServer

#: Fixtures that reach into the in-process Jupyter server (or patch objects of this
#: process): a test that uses one has nothing to talk to on the service.
IN_PROCESS = frozenset({"channels_app", "jp_serverapp", "jp_fetch", "jp_ws_fetch", "monkeypatch"})

#: The fixtures that talk to whichever host the test runs on.
FOLLOW_HOST = frozenset({"channels_ws", "channels_fetch"})

#: ``(host, broker)`` of a test on every host.
HOSTS_AND_BROKERS = [("extension", "local"), ("extension", "redis"), ("service", "local")]
IDS = ["extension-local", "extension-redis", "service"]

#: A test that starts its own server process runs once per host, with ``spawn(host, ...)``.
each_spawned_host = pytest.mark.parametrize("host", ["extension", "service"])


def configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "on_every_host: run the module's channels_ws and channels_fetch tests on the "
        "extension and on the service (tests/hosts.py)",
    )  # fmt: skip
    config.addinivalue_line(
        "markers", "extension_only(why): a test of an on_every_host module that observes the "
        "in-process server, so it runs on the extension only",
    )  # fmt: skip


def runs_on_every_host(metafunc: pytest.Metafunc) -> bool:
    definition = metafunc.definition
    return (
        definition.get_closest_marker("on_every_host") is not None
        and definition.get_closest_marker("extension_only") is None
        and not FOLLOW_HOST.isdisjoint(metafunc.fixturenames)
        and not IN_PROCESS.intersection(metafunc.fixturenames)
    )


def every_host(metafunc: pytest.Metafunc) -> None:
    """Parametrize a test by host (and broker, on the extension).

    Added as a ``parametrize`` mark, not by ``metafunc.parametrize``: pytest then leaves
    ``broker_url``'s own params alone instead of adding the Redis broker to the service.
    """
    if runs_on_every_host(metafunc):
        metafunc.definition.add_marker(
            pytest.mark.parametrize(
                ("host", "broker_url"), HOSTS_AND_BROKERS, indirect=["broker_url"], ids=IDS
            )
        )


def config_file(traits: dict[str, Any]) -> str:
    """``ChannelsApp`` traits as config-file lines (dicts and ``None`` included)."""
    return "".join(f"c.ChannelsApp.{name} = {value!r}\n" for name, value in traits.items())


def spawn(
    host: str, root: Path, history_path: Path, **traits: Any
) -> SpawnedServer | SpawnedService:
    """A server process of ``host`` with ``ChannelsApp`` ``traits``, not started yet: a
    ``jupyter server`` with the extension, or ``jupyter channels serve``."""
    if host == "service":
        return SpawnedService(root, history_path=history_path, **traits)
    return SpawnedServer(root, history_path, **traits)


def start_service(root: Path, traits: dict[str, Any]) -> SpawnedService:
    return SpawnedService(root, config=config_file(traits)).start()


def service_connect_factory(service: SpawnedService) -> Callable[..., Any]:
    """``channels_ws`` of the service: the user ``as_user`` names (default ada) connects
    with their token, as a browser page of the service's own origin (``kind`` browser,
    as on the extension)."""

    async def connect(headers: dict[str, str] | None = None) -> ChannelsClient:
        user = (headers or {}).get(USER_HEADER, "ada")
        return await service.connect(user, Origin=service.origin)

    return connect


def service_fetch_factory(service: SpawnedService) -> Callable[..., Any]:
    """``channels_fetch`` of the service: ``jp_fetch``'s arguments below
    ``api/channels/``, as the user ``as_user`` names, from a page of the service."""

    async def fetch(
        *parts: str,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> HTTPResponse:
        headers = dict(headers or {})
        user = headers.pop(USER_HEADER, "ada")
        headers.setdefault("Authorization", f"token {token_of(user)}")
        headers.setdefault("Origin", service.origin)
        url = f"{service.http_url}api/channels/{url_escape('/'.join(parts), plus=False)}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return await AsyncHTTPClient().fetch(url, headers=headers, request_timeout=20, **kwargs)

    return fetch


def identities(host: str) -> dict[str, tuple[str, str, str | None]]:
    """username -> (display name, initials, color) as the host stamps them: the service's
    identities come from its tokens file, which gives no color (as Jupyter gives none)."""
    if host == "service":
        return {user: (name, initials, None) for user, (name, initials, _) in USERS.items()}
    return dict(USERS)
