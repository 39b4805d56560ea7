"""A real ``redis-server`` for the tests, on a free port, stopped by whoever started it.

Without ``redis-server`` (Debian's package ``redis-server``; ``scripts/setup --test``
installs it) or the ``redis`` package, the Redis tests are skipped, except in
CI (``CI=true``), where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .support import free_port, stop_process

START_TIMEOUT = 20.0


def redis_server_binary() -> str:
    """The ``redis-server`` executable, or skip (fail in CI) without it."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        _missing("redis-server is not installed (scripts/setup --test installs it)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _missing("the redis package is not installed (pip install 'jupyter-channels[redis]')")
    assert found is not None
    return found


def _missing(why: str) -> None:
    """A missing dependency fails the run (scripts/setup --test installs it): never a skip."""
    pytest.fail(f"the Redis tests need it: {why}", pytrace=False)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>; with ``persistent``, an append-only
    file in ``directory`` keeps the data across :meth:`stop` and :meth:`start`."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"redis-{self.port}.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return self
            except OSError:
                pass
            except Exception as e:  # redis.ConnectionError, or BusyLoadingError while loading
                if "refused" not in str(e).lower() and "loading" not in str(e).lower():
                    raise
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not start: {self.log_path.read_text()[-2000:]}")

    def client(self, db: int = 0):  # -> redis.Redis (imported lazily, like the package does)
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): with ``persistent``, everything written is kept."""
        stop_process(self.proc)
        self.proc = None
