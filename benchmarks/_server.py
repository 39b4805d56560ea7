"""A real ``jupyter server`` with the extension, and a real ``jupyter channels serve``,
each on a free port, for the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``with Server(**traits) as server:``; then ``http_url``, ``token`` and ``pid``."""

    def __init__(self, **traits: Any) -> None:
        self.traits = traits
        self.port = free_port()
        self.token = "bench-" + os.urandom(6).hex()
        self.root = Path(tempfile.mkdtemp(prefix="channels-bench-"))
        self.proc: subprocess.Popen[bytes] | None = None
        #: Put first on the server's PYTHONPATH: the package of another revision
        #: (``_revision.py``), for a before / after in one run.
        self.pythonpath: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", "--ServerApp.log_level=WARN",
        ]  # fmt: skip

    def __enter__(self) -> Server:
        args = [
            *self.command(),
            f"--ChannelsApp.history_path={self.root / 'history.sqlite'}",
            *(f"--ChannelsApp.{k}={v}" for k, v in self.traits.items()),
        ]
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.root / "runtime")}
        if self.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (self.pythonpath, os.environ.get("PYTHONPATH")) if p
            )
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 180  # a loaded machine, tracemalloc on
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text()[-2000:])
            try:
                request = urllib.request.Request(
                    self.http_url + "api/channels/topics",
                    headers={"Authorization": f"token {self.token}"},
                )
                with urllib.request.urlopen(request, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"the {type(self).__name__.lower()} did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class Service(Server):
    """``jupyter channels serve`` with a tokens file holding this one token."""

    def command(self) -> list[str]:
        tokens = self.root / "tokens.json"
        tokens.write_text(json.dumps({self.token: {"username": "bench"}}))
        return [
            sys.executable, "-m", "jupyter_channels.cli", "serve", f"--port={self.port}",
            "--ip=127.0.0.1", f"--tokens={tokens}", "--log-level=WARN",
        ]  # fmt: skip
