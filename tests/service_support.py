"""The channels service (``jupyter channels serve``) as a subprocess on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .channels_fixture import GROUPS, USERS
from .support import REPO_ROOT, ChannelsClient, _request, free_port, stop_process

#: A token per test user (the users of tests/channels_fixture.py), and their groups.
TOKENS = {f"{username}-token-{'0' * 12}": username for username in USERS}


def token_of(username: str) -> str:
    return next(token for token, user in TOKENS.items() if user == username)


def tokens_file_text(tokens: dict[str, str] | None = None) -> str:
    """The tokens file for ``tokens`` (token -> username; default: every test user)."""
    entries = {
        token: {
            "username": user,
            "name": USERS.get(user, (user,))[0],
            "groups": GROUPS.get(user, []),
        }
        for token, user in (tokens or TOKENS).items()
    }
    return json.dumps(entries)


class SpawnedService:
    """``jupyter channels serve`` with the test channels importable, on a free port.

    ``config`` lines go into its config file (``c.ChannelsApp.x = ...``); ``traits`` are
    ``ChannelsApp`` traits given on the command line. Its history is ``history_path``
    (default: in ``root``); its output goes to ``log_path``.
    """

    def __init__(
        self,
        root: Path,
        *,
        config: str = "",
        port: int | None = None,
        history_path: Path | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        **traits: Any,
    ) -> None:
        self.root = root
        self.port = free_port() if port is None else port
        self.config = config
        self.args = args
        self.env = env or {}
        self.traits = traits
        self.tokens_path = root / "tokens.json"
        self.config_path = root / "service_config.py"
        self.history_path = history_path or root / "history.sqlite"
        self.log_path = root / f"service-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = token_of("ada")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def origin(self) -> str:
        """The service's own origin, as a page it served would send it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/channels/websocket"

    def start(self, timeout: float = 30) -> SpawnedService:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.tokens_path.exists():
            self.tokens_path.write_text(tokens_file_text())
        self.config_path.write_text(self.config)
        args = [
            sys.executable, "-m", "jupyter_channels.cli", "serve",
            f"--port={self.port}", f"--tokens={self.tokens_path}",
            f"--config={self.config_path}",
            f"--ChannelsApp.history_path={self.history_path}",
            "--ChannelsService.tokens_check_interval=0.2",
            *(f"--ChannelsApp.{k}={v}" for k, v in self.traits.items()),
            *self.args,
        ]  # fmt: skip
        path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), **self.env}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-3000:]}")
            try:
                self.rest("GET", "api/channels/topics")
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"service did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def rest(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """A REST call with a user's token (default ada's); the parsed JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.http_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token if token is None else token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    async def connect(self, user: str = "ada", **headers: str) -> ChannelsClient:
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(
            _request(self.ws_url, {"Authorization": f"token {token_of(user)}", **headers})
        )
        return ChannelsClient(conn)


@contextmanager
def started_together(*services: SpawnedService) -> Iterator[list[SpawnedService]]:
    """``services`` started at once (each takes seconds to come up), all stopped at the end."""
    with ThreadPoolExecutor(len(services)) as pool:
        starts = [pool.submit(service.start) for service in services]
    try:
        yield [start.result() for start in starts]
    finally:
        for service in services:
            service.stop()
