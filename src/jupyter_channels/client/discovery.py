"""Finding the channels endpoint and a token.

In order: explicit arguments; ``JUPYTER_CHANNELS_URL`` / ``JUPYTER_CHANNELS_TOKEN``
(exported by the server into the kernels it starts); ``JPY_PARENT_PID``, the
server that started this kernel, through its ``jpserver-<pid>.json`` runtime file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..constants import ENV_TOKEN, ENV_URL, WS_PATH
from .errors import ServerNotFound


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: the WebSocket URL, the token, and where they came from."""

    url: str
    token: str | None
    source: str


def websocket_url(url: str) -> str:
    """The channels endpoint for ``url``: the endpoint itself, or a server's http(s) or
    ws(s) URL with its base_url (``http://localhost:8888/user/ada/``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a server URL: {url!r} (expected http(s):// or ws(s)://)")
    path = parts.path.rstrip("/")
    if not path.endswith(WS_PATH):
        path += "/" + WS_PATH
    query = {k: v for k, v in parse_qs(parts.query).items() if k != "token"}
    return urlunsplit((scheme, parts.netloc, path, urlencode(query, doseq=True), ""))


def _token_in(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("token")
    return values[0] if values else None


def _runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def resolve(url: str | None = None, token: str | None = None) -> Endpoint:
    """The endpoint to use; raises :class:`ServerNotFound` naming what was tried."""
    if url:
        return Endpoint(websocket_url(url), token or _token_in(url), "arguments")
    env_url = os.environ.get(ENV_URL)
    if env_url:
        return Endpoint(websocket_url(env_url), token or os.environ.get(ENV_TOKEN), f"${ENV_URL}")
    tried = ["no url argument", f"${ENV_URL} is not set"]
    pid = os.environ.get("JPY_PARENT_PID")
    if pid:
        info_file = _runtime_dir() / f"jpserver-{pid}.json"
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            tried.append(f"JPY_PARENT_PID={pid} but {info_file} is missing or unreadable")
        else:
            return Endpoint(
                websocket_url(info["url"]), token or info.get("token") or None, str(info_file)
            )
    else:
        tried.append("$JPY_PARENT_PID is not set (not in a kernel started by a Jupyter server)")
    raise ServerNotFound(
        "not_found",
        "no Jupyter server found: " + "; ".join(tried) + ". Pass the server's URL and token, e.g. "
        'jupyter_channels.connect(url="http://localhost:8888/", token="..."), '
        f"or set ${ENV_URL} and ${ENV_TOKEN}.",
    )
