"""Limits that close a connection: 4x max_message_size (1009) and a slow consumer (4008),
on every host (tests/hosts.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
import urllib.request

import psutil
import pytest

from .hosts import each_spawned_host, spawn
from .support import SpawnedServer, error_reason

pytestmark = pytest.mark.on_every_host


@pytest.fixture
def channels_config():
    return {"max_message_size": 10_000}


async def test_a_frame_over_the_limit_is_dropped_with_too_large_and_its_ref(channels_ws):
    client = await channels_ws()
    await client.join("chat:big")
    big = {"event": "message", "topic": "chat:big", "subject": "text", "ref": "big"}
    await client.send({**big, "payload": "x" * 20_000})
    reply = await client.expect("reply", ref="big")
    assert error_reason(reply) == "too_large"
    # Nothing was stored or broadcast, and the connection carries on.
    assert await client.publish("chat:big", "text", {"ok": True}) == 1


async def test_a_frame_over_four_times_the_limit_closes_the_connection_with_1009(channels_ws):
    client = await channels_ws()
    other = await channels_ws()
    await other.join("chat:big")
    await client.send("x" * 40_001)
    assert await client.recv_raw() is None
    assert client.conn.close_code == 1009
    # Other clients carry on.
    assert await other.publish("chat:big", "text", {}) == 1


def _raw_subscriber(server: SpawnedServer, topic: str) -> socket.socket:
    """A WebSocket client that joins ``topic`` and then never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /api/channels/websocket HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: token {server.token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = json.dumps({"event": "join", "topic": topic}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    return sock


def _read_until_close(sock: socket.socket, timeout: float) -> int | None:
    """Drain frames until a close frame, and return its code; ``None`` if the server
    ended the socket without one (a slow consumer's close frame waits behind the data
    it never read, so the server aborts the socket instead)."""
    sock.settimeout(timeout)
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    try:
        return _next_close(need)
    except (EOFError, ConnectionResetError):
        return None


def _next_close(need) -> int | None:
    while True:
        b0, b1 = need(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", need(8))
        data = need(length)
        if b0 & 0x0F == 0x8:
            return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


def _peer_sockets(process: psutil.Process, sock: socket.socket) -> list:
    """The server's sockets connected to ``sock``."""
    port = sock.getsockname()[1]
    return [c for c in process.net_connections("tcp") if c.raddr and c.raddr.port == port]


def _members(server: SpawnedServer, topic: str) -> int:
    return sum(len(user["metas"]) for user in _presence(server, topic).values())


def _presence(server: SpawnedServer, topic: str) -> dict:
    req = urllib.request.Request(
        f"{server.http_url}api/channels/topics/{topic}/presence",
        headers={"Authorization": f"token {server.token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


@each_spawned_host
async def test_a_client_that_stops_reading_is_closed_with_4008_and_memory_stays_bounded(
    tmp_path, host
):
    max_queued = 4 * 1024 * 1024
    server = spawn(host, tmp_path, tmp_path / "history.sqlite", rate_limit=0, history_size=50)
    server.start()
    try:
        topic = "chat:flood"
        payload = {"blob": "y" * 100_000}
        fast = await server.connect()
        publisher = await server.connect()
        await fast.join(topic)
        await publisher.join(topic)
        # Warm up: the server's steady state for 100 kB messages, before the slow reader.
        # (The baseline is the highest RSS of this phase: SQLite's write-ahead log and
        # page cache make RSS cycle by a few MB as the log is checkpointed.)
        process = psutil.Process(server.proc.pid)
        baseline = 0
        for _ in range(120):
            await publisher.publish(topic, "blob", payload)
            await fast.messages(1, topic)
            baseline = max(baseline, process.memory_info().rss)
        slow = _raw_subscriber(server, topic)
        deadline = time.monotonic() + 10
        while _members(server, topic) < 3:
            assert time.monotonic() < deadline, "the raw subscriber never joined"
            await asyncio.sleep(0.05)

        peak = baseline
        count = 500  # 50 MB in all
        received = 0
        slow_closed_at = None
        for i in range(count):
            await publisher.send(
                {"event": "message", "topic": topic, "subject": "blob", "payload": payload,
                 "ref": str(i)}
            )  # fmt: skip
            await publisher.expect("reply", ref=str(i))
            received += len(await fast.messages(1, topic))
            peak = max(peak, process.memory_info().rss)
            if i % 10 == 0 and slow_closed_at is None and _members(server, topic) == 2:
                slow_closed_at = i
                # Cut at once: no socket left to it, without waiting for a close handshake
                # the slow reader would never answer.
                assert _peer_sockets(process, slow) == []
                code = await asyncio.to_thread(_read_until_close, slow, 5.0)
        peak = max(peak, process.memory_info().rss)

        assert slow_closed_at is not None, "the slow consumer was never closed"
        assert code in (4008, None)  # 4008 where the socket could still carry it
        assert received == count
        growth = peak - baseline
        print(f"RSS growth {growth / 2**20:.1f} MiB")
        assert growth < 3 * max_queued, growth / 2**20
    finally:
        server.stop()
