"""Test helpers: a small WebSocket client speaking the channels protocol, spawned servers."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .channels_fixture import CHANNELS

RECV_TIMEOUT = 10.0
_refs = itertools.count(1)


class ChannelsClient:
    """Wraps a Tornado WebSocket client: send dicts, receive parsed frames with a timeout."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.pings = 0
        #: Frames skipped by ``expect``; ``recv`` returns them first, in order.
        self.backlog: list[Any] = []

    async def send(self, frame: Any) -> None:
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv_raw(self, timeout: float = RECV_TIMEOUT) -> str | None:
        return await asyncio.wait_for(self.conn.read_message(), timeout)

    async def recv(self, timeout: float = RECV_TIMEOUT, *, skip_ping: bool = True) -> Any:
        """The next frame, parsed (``"ping"`` frames are counted and skipped)."""
        if self.backlog:
            return self.backlog.pop(0)
        while True:
            raw = await self.recv_raw(timeout)
            if raw is None:
                raise ConnectionError(f"closed: {self.conn.close_code} {self.conn.close_reason}")
            if raw == "ping" and skip_ping:
                self.pings += 1
                continue
            return raw if raw == "ping" else json.loads(raw)

    async def expect(self, event: str, timeout: float = RECV_TIMEOUT, **fields: Any) -> dict:
        """Skip frames until one with ``event`` (and the given fields) arrives."""

        def matches(frame: Any) -> bool:
            return (
                isinstance(frame, dict)
                and frame.get("event") == event
                and all(frame.get(k) == v for k, v in fields.items())
            )

        for i, frame in enumerate(self.backlog):
            if matches(frame):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            frame = await self._read(max(0.01, deadline - time.monotonic()))
            if matches(frame):
                return frame
            self.backlog.append(frame)

    async def _read(self, timeout: float) -> Any:
        saved, self.backlog = self.backlog, []
        try:
            return await self.recv(timeout)
        finally:
            self.backlog = saved

    async def drain(self, at_least: int = 0, timeout: float = 0.3) -> list[Any]:
        """Every frame (pings skipped): ``at_least`` of them however long they take,
        then more until nothing arrives for ``timeout`` seconds."""
        frames = [await self.recv() for _ in range(at_least)]
        while True:
            try:
                frames.append(await self.recv(timeout))
            except asyncio.TimeoutError:
                return frames

    async def silent(self, timeout: float = 0.3) -> None:
        """Assert nothing but pings arrives within ``timeout``."""
        try:
            frame = await self.recv(timeout)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    async def request(self, frame: dict[str, Any], timeout: float = RECV_TIMEOUT) -> dict:
        """Send ``frame`` with a fresh ``ref`` and return its reply."""
        ref = str(next(_refs))
        await self.send({**frame, "ref": ref})
        return await self.expect("reply", timeout, ref=ref)

    async def join(self, topic: str, **extra: Any) -> dict:
        """Join and return the ok reply's response (after its presence_state)."""
        reply = await self.request({"event": "join", "topic": topic, **extra})
        assert reply["payload"]["status"] == "ok", reply
        await self.expect("presence_state", topic=topic)
        return reply["payload"]["response"]

    async def publish(self, topic: str, subject: str = "text", payload: Any = None) -> int:
        reply = await self.request(
            {"event": "message", "topic": topic, "subject": subject, "payload": payload or {}}
        )
        assert reply["payload"]["status"] == "ok", reply
        return reply["payload"]["response"]["offset"]

    async def messages(self, n: int, topic: str | None = None) -> list[dict]:
        """The next ``n`` message frames (of ``topic``), skipping everything else."""
        out = []
        while len(out) < n:
            frame = await self.recv()
            if frame.get("event") == "message" and (topic is None or frame["topic"] == topic):
                out.append(frame)
        return out

    async def closed(self) -> str:
        """Read until the server closes the connection; how it closed it."""
        while True:
            try:
                await self.recv()
            except ConnectionError as e:
                return str(e)

    def close(self) -> None:
        self.conn.close()


def config(**traits: Any) -> pytest.MarkDecorator:
    """Run one test with these ``ChannelsApp`` traits (on top of the test channels and
    of presence diffs sent one per join and leave, as ``channels_config``)."""
    label = ",".join(f"{key}={value}" for key, value in traits.items())
    return pytest.mark.parametrize(
        "channels_config",
        [{"channels": dict(CHANNELS), "presence_interval": 0, **traits}],
        ids=[label],
    )


def connect_factory(jp_ws_fetch: Callable[..., Any]) -> Callable[..., Any]:
    async def connect(**kwargs: Any) -> ChannelsClient:
        conn = await jp_ws_fetch("api", "channels", "websocket", **kwargs)
        return ChannelsClient(conn)

    return connect


def error_reason(reply: dict) -> str:
    """The ``reason`` of an error reply or ``error`` frame."""
    if reply["event"] == "error":
        return reply["payload"]["reason"]
    assert reply["payload"]["status"] == "error", reply
    return reply["payload"]["response"]["reason"]


def wait_until(condition: Callable[[], Any], timeout: float = RECV_TIMEOUT) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        time.sleep(0.01)


def with_needs(request: Any) -> Any:
    """The kind a fixture is parametrized with (a dataclass with ``make`` and ``needs``),
    its ``make`` given the fixtures that ``needs`` names."""
    kind = request.param
    needed = {name: request.getfixturevalue(name) for name in kind.needs}
    return dataclasses.replace(kind, make=functools.partial(kind.make, **needed))


async def await_until(condition: Callable[[], Any], timeout: float = RECV_TIMEOUT) -> None:
    """:func:`wait_until` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {condition}")
        await asyncio.sleep(0.01)


# -- spawned servers ------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, then SIGKILL after 20 s: every process a test starts ends."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpawnedServer:
    """A ``jupyter server`` subprocess with the extension, on a free port.

    Pass ``port`` and ``token`` to restart "the same" server; ``env`` adds to the
    environment it (and the kernels it starts) runs with; ``server_args`` to its
    command line (``--log-level=DEBUG``, say). Its output goes to ``log_path``.
    """

    def __init__(
        self,
        root: Path,
        history_path: Path,
        *,
        port: int | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
        server_args: tuple[str, ...] = (),
        **traits: Any,
    ) -> None:
        self.root = root
        self.history_path = history_path
        self.traits = traits
        self.port = free_port() if port is None else port
        self.token = token or "test-token-" + os.urandom(4).hex()
        self.env = env or {}
        self.server_args = server_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"server-{self.port}.log"

    #: What answers once the server is up (a server pointing at a service has no channels).
    ready_path = "api/channels/topics"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/channels/websocket"

    def start(self, timeout: float = 60) -> SpawnedServer:
        args = [
            sys.executable, "-m", "jupyter_server",
            "--no-browser", "--allow-root",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--ChannelsApp.history_path={self.history_path}",
        ]  # fmt: skip
        args += [f"--ChannelsApp.{k}={v}" for k, v in self.traits.items()]
        args += self.server_args
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.root / "runtime"), **self.env}
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(
                    self.http_url + self.ready_path,
                    headers={"Authorization": f"token {self.token}"},
                )
                with urllib.request.urlopen(req, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        """A REST call to the server (``path`` relative to its root), authenticated with
        its token; returns the parsed JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.http_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    async def connect(self, **headers: str) -> ChannelsClient:
        conn = await websocket_connect(
            _request(self.ws_url, {"Authorization": f"token {self.token}", **headers})
        )
        return ChannelsClient(conn)

    def rss(self) -> int:
        import psutil

        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss


def _request(url: str, headers: dict[str, str]) -> Any:
    from tornado.httpclient import HTTPRequest

    return HTTPRequest(url, headers=headers, connect_timeout=30, request_timeout=30)


REPO_ROOT = Path(__file__).resolve().parents[1]


def spawn(
    root: Path, history_path: Path, *, extra_path: tuple[Path, ...] = (), **options: Any
) -> SpawnedServer:
    """A ``jupyter server`` subprocess serving the test channels (it imports ``tests``)."""
    path = [str(REPO_ROOT), *map(str, extra_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    return SpawnedServer(
        root,
        history_path,
        env={"PYTHONPATH": os.pathsep.join(path)},
        channels=json.dumps(options.pop("channels", CHANNELS)),
        **options,
    )
