"""Finding the channels endpoint and a token, for the client and the CLI alike.

In order: explicit arguments; ``JUPYTER_CHANNELS_URL`` / ``JUPYTER_CHANNELS_TOKEN``
(exported by the server into the kernels it starts; under JupyterHub, a server
pointing at a channels service exports no token and its kernels present their
hub API token, ``$JUPYTERHUB_API_TOKEN``); ``JPY_PARENT_PID``, the
server that started this kernel, through its ``jpserver-<pid>.json`` runtime file;
then every ``jpserver-*.json`` in Jupyter's runtime directory, newest first, as
``jupyter server list`` shows them. A runtime file is stale when its process is
gone or nothing answers at its address (a server killed without cleaning up);
stale files are skipped and named in :class:`ServerNotFound`.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..constants import ENV_HUB_TOKEN, ENV_TOKEN, ENV_URL, LOGIN_PATH, WS_PATH
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


def hub_login_path(endpoint: Endpoint) -> str | None:
    """When ``endpoint`` is reached with this process's hub API token (a kernel of a
    JupyterHub user's server pointing at a channels service): the path of the service's
    login endpoint, where a page of the same hub signs in with the hub's OAuth. The
    page is never given the hub API token itself."""
    hub_token = os.environ.get(ENV_HUB_TOKEN)
    if not hub_token or endpoint.token != hub_token:
        return None
    path = urlsplit(endpoint.url).path
    return path[: -len(WS_PATH)] + LOGIN_PATH


def _token_in(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("token")
    return values[0] if values else None


#: How long a runtime file's server may take to accept a connection before it counts as stale.
ANSWER_TIMEOUT = 2.0

_SERVER_FILE = re.compile(r"jpserver-(\d+)\.json")

#: What a failed discovery suggests, for callers of the Python API.
CLIENT_HINT = (
    'Pass the server\'s URL and token, e.g. jupyter_channels.connect(url="http://localhost:8888/", '
    f'token="..."), or set ${ENV_URL} and ${ENV_TOKEN}.'
)


def http_url(url: str) -> str:
    """The server's http(s) base URL (with its base_url) for a server or endpoint URL."""
    ws = urlsplit(websocket_url(url))
    scheme = "https" if ws.scheme == "wss" else "http"
    base = ws.path[: -len(WS_PATH)]
    return urlunsplit((scheme, ws.netloc, base if base.endswith("/") else base + "/", "", ""))


def _runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def _pid_alive(pid: int) -> bool:
    from jupyter_server.utils import check_pid

    return bool(check_pid(pid))


def _answers(url: str) -> bool:
    """Whether something accepts connections at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), ANSWER_TIMEOUT):
            return True
    except OSError:
        return False


def _server_files(runtime: Path) -> list[Path]:
    """``jpserver-<pid>.json`` files, the most recently written first."""
    try:
        files = [p for p in runtime.iterdir() if _SERVER_FILE.fullmatch(p.name)]
    except OSError:
        return []

    def age(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(files, key=age, reverse=True)


def _read(info_file: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("url"), str) else None


def _running_servers(runtime: Path, tried: list[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each live server's runtime file and contents; what was skipped goes to ``tried``."""
    files = _server_files(runtime)
    if not files:
        tried.append(f"no jpserver-*.json server files in {runtime}")
    for info_file in files:
        info = _read(info_file)
        if info is None:
            tried.append(f"{info_file} is unreadable")
            continue
        pid = info.get("pid")
        url = info["url"]
        if isinstance(pid, int) and not _pid_alive(pid):
            tried.append(f"{info_file} is stale: its server (pid {pid}) is not running")
        elif info.get("sock"):
            tried.append(f"{info_file} is a server on the Unix socket {info['sock']}")
        elif not _answers(url):
            tried.append(f"{info_file} is stale: nothing answers at {url} (pid {pid})")
        else:
            yield info_file, info


def _endpoint(info: dict[str, Any], token: str | None, source: Path) -> Endpoint:
    return Endpoint(websocket_url(info["url"]), token or info.get("token") or None, str(source))


def resolve(
    url: str | None = None, token: str | None = None, *, hint: str = CLIENT_HINT
) -> Endpoint:
    """The endpoint to use; raises :class:`ServerNotFound` naming what was tried,
    followed by ``hint`` (what to do instead)."""
    if url:
        return Endpoint(websocket_url(url), token or _token_in(url), "arguments")
    env_url = os.environ.get(ENV_URL)
    if env_url:
        env_token = token or os.environ.get(ENV_TOKEN) or os.environ.get(ENV_HUB_TOKEN)
        return Endpoint(websocket_url(env_url), env_token, f"${ENV_URL}")
    tried = ["no url argument", f"${ENV_URL} is not set"]
    runtime = _runtime_dir()
    pid = os.environ.get("JPY_PARENT_PID")
    if pid:
        info_file = runtime / f"jpserver-{pid}.json"
        info = _read(info_file)
        if info is not None:
            return _endpoint(info, token, info_file)
        tried.append(f"JPY_PARENT_PID={pid} but {info_file} is missing or unreadable")
    else:
        tried.append("$JPY_PARENT_PID is not set (not in a kernel started by a Jupyter server)")
    for info_file, info in _running_servers(runtime, tried):
        return _endpoint(info, token, info_file)
    raise ServerNotFound(
        "not_found", "no running Jupyter server found: " + "; ".join(tried) + ". " + hint
    )
