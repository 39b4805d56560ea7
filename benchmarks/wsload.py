"""The load generator: many raw WebSocket connections in one asyncio process.

    python benchmarks/wsload.py SCENARIO '{"url": ..., ...}'   ->  one JSON line of results

Scenarios: ``fanout``, ``latency``, ``idle`` (see ``benchmarks/fanout.py``).
Frames are parsed with plain byte slicing and a regular expression for the
sequence number, so one process can count millions of deliveries; the
process reports its own CPU time so a saturated generator shows.

``target`` is ``project`` (the channels protocol: join, replies with ``ref``) or
``baseline`` (the bare forwarder: no join, no replies; the publisher's own
observer connection counts what came back as its acks). With ``"phoenix": true``
the project's subscribers connect with ``?vsn=2.0.0`` and join in Phoenix's V2
frames (the publisher stays native).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import statistics
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit

SEQ = re.compile(rb'"seq":(\d+)')
REF = re.compile(rb'"ref":"p(\d+)"')
TOPIC = "bench:fanout"


class WS(asyncio.Protocol):
    """A minimal client: handshake, masked text frames out, unmasked frames in."""

    def __init__(self, on_frame: Any) -> None:
        self.on_frame = on_frame
        self.buffer = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(ConnectionError(head.decode(errors="replace")))
                return
            self.handshaken.set_result(None)
        pos = 0
        n = len(buf)
        on_frame = self.on_frame
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if n - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                on_frame(bytes(buf[pos + head : pos + head + length]))
            elif opcode == 8 and not self.closed.done():
                self.closed.set_result(None)
            pos += head + length
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(exc or ConnectionError("closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        # XOR with the mask through int arithmetic: fast enough for small frames.
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        assert self.transport is not None
        self.transport.write(header + mask + masked)


async def connect(url: str, token: str | None, on_frame: Any) -> WS:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    for attempt in range(20):
        try:
            _, ws = await loop.create_connection(lambda: WS(on_frame), parts.hostname, parts.port)
            break
        except OSError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: token {token}\r\n" if token else ""
    assert ws.transport is not None
    ws.transport.write(
        (
            f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        ).encode()
    )
    await ws.handshaken
    return ws


def join_frame() -> str:
    # Presence off: with it, each of N joins is sent to every member (N x N frames),
    # a cost of presence, not of delivering messages; the baseline has none.
    return json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "presence": False})


def phoenix_join_frame() -> str:
    return json.dumps(["j", "j", TOPIC, "phx_join", {"presence": False}])


def message_frame(seq: int, pad: str, sent_ns: int = 0, ref: bool = True) -> str:
    frame: dict[str, Any] = {
        "event": "message",
        "topic": TOPIC,
        "subject": "tick",
        "payload": {"seq": seq, "t": sent_ns, "pad": pad},
    }
    if ref:
        frame["ref"] = f"p{seq}"
    return json.dumps(frame, separators=(",", ":"))


class Goal:
    """Set once every subscriber received ``target`` messages."""

    def __init__(self) -> None:
        self.target = 0
        self.pending = 0
        self.reached = asyncio.Event()

    def expect(self, target: int, subscribers: int) -> None:
        self.target, self.pending = target, subscribers
        self.reached.clear()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):  # the counts tell what was missed
            await asyncio.wait_for(self.reached.wait(), timeout)


class Subscriber:
    """Counts the sequence numbers it receives and checks they come once, in order."""

    __slots__ = ("count", "expected", "goal", "ok", "times", "ws")

    def __init__(self, goal: Goal, record_times: bool = False) -> None:
        self.goal = goal
        self.expected = 0
        self.count = 0
        self.ok = True
        self.times: list[int] | None = [] if record_times else None
        self.ws: WS | None = None

    def frame(self, data: bytes) -> None:
        match = SEQ.search(data)
        if match is None:
            return  # replies, presence, ping
        seq = int(match.group(1))
        if seq != self.expected:
            self.ok = False
        self.expected = seq + 1
        self.count += 1
        if self.times is not None:
            self.times.append(time.perf_counter_ns())
        goal = self.goal
        if self.count == goal.target:
            goal.pending -= 1
            if goal.pending == 0:
                goal.reached.set()


async def open_subscribers(
    cfg: dict[str, Any], n: int, goal: Goal, record_times: bool = False
) -> list[Subscriber]:
    subs = [Subscriber(goal, record_times) for _ in range(n)]
    sem = asyncio.Semaphore(200)

    phoenix = cfg.get("phoenix", False)
    url = cfg["url"] + "?vsn=2.0.0" if phoenix else cfg["url"]

    async def one(sub: Subscriber) -> None:
        async with sem:
            sub.ws = await connect(url, cfg.get("token"), sub.frame)
            if cfg["target"] == "project":
                sub.ws.send(phoenix_join_frame() if phoenix else join_frame())

    await asyncio.gather(*(one(sub) for sub in subs))
    if cfg["target"] == "project":
        await wait_members(cfg, n)
    return subs


async def wait_members(cfg: dict[str, Any], n: int) -> None:
    """Wait until the server counts ``n`` joined connections (presence, over REST)."""
    import urllib.request

    parts = urlsplit(cfg["url"])
    prefix = parts.path.split("api/channels/websocket")[0]  # "/", or e.g. a hub service's
    url = f"http://{parts.netloc}{prefix}api/channels/topics/{TOPIC}/presence"
    deadline = time.monotonic() + 120
    request = urllib.request.Request(url, headers={"Authorization": f"token {cfg['token']}"})
    while time.monotonic() < deadline:
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=60).read())
        if sum(len(u["metas"]) for u in json.loads(body).values()) >= n:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"only some of {n} subscribers joined")


class Publisher:
    """Sends messages keeping at most ``window`` unacknowledged."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.acked = 0
        self.event = asyncio.Event()
        self.ws: WS | None = None
        self.observer: WS | None = None

    def reply(self, data: bytes) -> None:
        if REF.search(data):
            self.acked += 1
            self.event.set()

    def observed(self, data: bytes) -> None:
        if SEQ.search(data):
            self.acked += 1
            self.event.set()

    async def open(self) -> None:
        cfg = self.cfg
        self.ws = await connect(cfg["url"], cfg.get("token"), self.reply)
        if cfg["target"] == "project":
            self.ws.send(join_frame())
        else:
            self.observer = await connect(cfg["url"], cfg.get("token"), self.observed)

    async def wait_window(self, sent: int, window: int) -> None:
        while sent - self.acked >= window:
            self.event.clear()
            await self.event.wait()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fanout(cfg: dict[str, Any]) -> dict[str, Any]:
    goal = Goal()
    subs = await open_subscribers(cfg, cfg["subscribers"], goal)
    pub = Publisher(cfg)
    await pub.open()
    await asyncio.sleep(0.2)
    total, pad = cfg["messages"], "x" * 150
    project = cfg["target"] == "project"
    goal.expect(total, len(subs))
    cpu0, start = cpu(), time.perf_counter()
    for seq in range(total):
        await pub.wait_window(seq, 64)
        assert pub.ws is not None
        pub.ws.send(message_frame(seq, pad, ref=project))
    await goal.wait(600)
    wall = time.perf_counter() - start
    valid = all(sub.count == total and sub.ok for sub in subs)
    return {
        "deliveries/s": len(subs) * total / wall,
        "valid": valid,
        "generator_cpu": (cpu() - cpu0) / wall,
    }


async def latency(cfg: dict[str, Any]) -> dict[str, Any]:
    goal = Goal()
    subs = await open_subscribers(cfg, cfg["subscribers"], goal, record_times=True)
    pub = Publisher(cfg)
    await pub.open()
    await asyncio.sleep(0.2)
    rate, seconds = cfg["rate"], cfg["seconds"]
    total, pad = int(rate * seconds), "x" * 150
    project = cfg["target"] == "project"
    sent_at: list[int] = []
    goal.expect(total, len(subs))
    cpu0, start = cpu(), time.perf_counter()
    for seq in range(total):
        target = start + seq / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at.append(time.perf_counter_ns())
        assert pub.ws is not None
        pub.ws.send(message_frame(seq, pad, ref=project))
    await goal.wait(60)
    wall = time.perf_counter() - start
    samples = [(t - sent_at[i]) / 1e6 for sub in subs for i, t in enumerate(sub.times or [])]
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(len(samples) * 0.99) - 1],
        "max_ms": samples[-1],
        "valid": all(sub.count == total and sub.ok for sub in subs),
        "generator_cpu": (cpu() - cpu0) / wall,
    }


async def idle(cfg: dict[str, Any]) -> dict[str, Any]:
    """Open ``subscribers`` idle joined connections, report, then wait for one broadcast."""
    goal = Goal()
    subs = await open_subscribers(cfg, cfg["subscribers"], goal)
    print(json.dumps({"opened": len(subs)}), flush=True)
    sys.stdin.readline()  # the orchestrator measures the server's memory now
    pub = Publisher(cfg)
    await pub.open()
    assert pub.ws is not None
    goal.expect(1, len(subs))
    start = time.perf_counter()
    pub.ws.send(message_frame(0, "x" * 150, ref=cfg["target"] == "project"))
    await goal.wait(120)
    return {
        "reached": sum(1 for sub in subs if sub.count == 1),
        "broadcast_s": time.perf_counter() - start,
    }


SCENARIOS = {"fanout": fanout, "latency": latency, "idle": idle}

if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(SCENARIOS[sys.argv[1]](json.loads(sys.argv[2])))
    print(json.dumps(result), flush=True)
