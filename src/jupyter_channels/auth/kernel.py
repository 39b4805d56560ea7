"""The kernel token: how kernels and scripts launched by the server reach the channels.

At start the extension mints a random token, accepts it on the channels
endpoints only, and exports ``JUPYTER_CHANNELS_URL`` / ``JUPYTER_CHANNELS_TOKEN``
into the server's own environment, which the kernels it launches inherit. A
server pointing at a channels service (``ChannelsApp.service_url``) exports the
service's endpoint and ``service_token`` instead, and mints no token.
"""

from __future__ import annotations

import os

from jupyter_server.auth import User

from ..constants import ENV_TOKEN, ENV_URL, WS_PATH
from .tokens import mint_token, presented_token, token_matches

__all__ = [
    "export_env",
    "kernel_user",
    "mint_token",
    "presented_token",
    "token_matches",
    "websocket_url",
]

_WILDCARDS = {"", "0.0.0.0", "::", "localhost"}


def kernel_user(name: str | None = None) -> User:
    """The identity of a connection made with the kernel token."""
    display = (name or "Kernel")[:64]
    return User(username="kernel", name=display, display_name=display, initials="K", color=None)


def websocket_url(ip: str, port: int, base_url: str, secure: bool) -> str:
    """The channels endpoint as seen from this machine."""
    host = "127.0.0.1" if ip in _WILDCARDS else ip
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "wss" if secure else "ws"
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    return f"{scheme}://{host}:{port}{base}{WS_PATH}"


def export_env(url: str, token: str) -> None:
    """Make the endpoint and token visible to every kernel the server launches from now on
    (no token: none is exported, and none inherited from the server's own environment)."""
    os.environ[ENV_URL] = url
    if token:
        os.environ[ENV_TOKEN] = token
    else:
        os.environ.pop(ENV_TOKEN, None)
