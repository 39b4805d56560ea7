"""Fixtures of the client tests: a spawned server that serves the test channels, and the
URL and token of the in-process one."""

from __future__ import annotations

from typing import Any

import pytest

#: Variables through which the client discovers a server by itself.
DISCOVERY_ENV = ("JUPYTER_CHANNELS_URL", "JUPYTER_CHANNELS_TOKEN", "JPY_PARENT_PID")


@pytest.fixture
def server_url(jp_serverapp: Any, http_server: Any, jp_http_port: int, jp_base_url: str) -> str:
    """The in-process server's http URL with its base_url (pytest-jupyter's ``/a%40b/``);
    ``http_server`` makes it listen."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


@pytest.fixture
def server_token(jp_serverapp: Any) -> str:
    """The in-process server's Jupyter token."""
    return str(jp_serverapp.identity_provider.token)
