"""Jupyter runtime files (``jpserver-<pid>.json``) for discovery tests: live, stale, none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .support import SpawnedServer, free_port


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait(30)
    return proc.pid


def write_server_file(runtime: Path, pid: int, url: str, *, age: float = 0, **info: Any) -> Path:
    """A runtime file as a Jupyter server writes it, last modified ``age`` seconds ago."""
    runtime.mkdir(parents=True, exist_ok=True)
    path = runtime / f"jpserver-{pid}.json"
    path.write_text(json.dumps({"url": url, "pid": pid, "token": "", "sock": "", **info}))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def stale_server_file(runtime: Path, *, age: float = 0) -> Path:
    """The runtime file of a server that died without removing it."""
    return write_server_file(runtime, dead_pid(), f"http://127.0.0.1:{free_port()}/", age=age)


def copy_server_file(server: SpawnedServer, runtime: Path, *, age: float = 0) -> Path:
    """``server``'s own runtime file, copied into ``runtime``."""
    (source,) = (server.root / "runtime").glob("jpserver-*.json")
    runtime.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(source, runtime / source.name))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path
