"""A server restart under a classroom: every client rejoins with ``since`` at once.

    python benchmarks/reconnect_storm.py --clients 1000 --history 200 --rate 50

N clients (each its own user, presence on) are joined to one topic holding
``--history`` messages. The service restarts on the same history file and port; once
it answers, every client reconnects and rejoins with ``since`` = the last offset it
saw, all at once, while a publisher sends ``--rate`` messages per second. Reported:
the time from the restarted server answering until all N have recovered (an ok join
reply, ``recovered`` true), whether every client then holds every offset exactly once
and in order, the restarted server's peak RSS, and the latency of the live messages
(publish to receipt, over every client that receives them) during the storm.

Runs side by side on ``batched`` (the defaults: batched presence, join admission,
shared history reads) and ``previous`` (``presence_interval`` 0, ``join_rate`` 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from presence_storm import Classroom, _cpu_s, _rss_kb
from wsload import WS, connect

TOPIC = "bench:restart"
OFFSET = re.compile(rb'"offset":(\d+)')
SENT = re.compile(rb'"t":(\d+)')
STORM = 5.0  # seconds of the storm over which live latency is measured


class Student:
    """One client: its offsets, checked once and in order, and its join replies."""

    def __init__(self, run: Run, token: str) -> None:
        self.run = run
        self.token = token
        self.last = 0
        self.ok = True
        self.ws: WS | None = None
        self.recovered_at: float | None = None
        self.refused = 0

    def frame(self, data: bytes) -> None:
        if data.startswith(b'{"event":"message"'):
            match = OFFSET.search(data)
            if match is not None:
                self.take(int(match.group(1)))
                sent = SENT.search(data)
                if sent is not None and self.run.measuring:
                    self.run.latencies.append(time.perf_counter_ns() - int(sent.group(1)))
        elif data.startswith(b'{"event":"reply"'):
            reply = json.loads(data)
            payload = reply["payload"]
            response = payload["response"]
            if payload["status"] != "ok":
                if "retry_after" in response:
                    self.refused += 1
                    delay = response["retry_after"] / 1000 * (1 + random.random() / 4)
                    asyncio.get_running_loop().call_later(delay, self.join)
                else:
                    self.ok = False
                return
            for message in response.get("messages", []):
                self.take(message["offset"])
            if self.run.restarted is not None and self.recovered_at is None:
                if not response.get("recovered", False):
                    self.ok = False
                self.recovered_at = time.perf_counter()
                self.run.recovering -= 1
                if self.run.recovering == 0:
                    self.run.all_recovered.set()
            self.run.joined += 1
            if self.run.joined == self.run.n:
                self.run.all_joined.set()

    def take(self, offset: int) -> None:
        if offset != self.last + 1:
            self.ok = False
        self.last = max(self.last, offset)

    def join(self) -> None:
        assert self.ws is not None
        frame: dict[str, Any] = {"event": "join", "topic": TOPIC, "ref": "j"}
        if not self.run.presence:
            frame["presence"] = False
        if self.last:
            frame["since"] = self.last
        self.ws.send(json.dumps(frame))

    async def open(self, url: str) -> None:
        self.ws = await connect(url, self.token, self.frame)
        self.join()


class Run:
    def __init__(self, n: int, presence: bool) -> None:
        self.n = n
        self.presence = presence
        self.joined = 0
        self.all_joined = asyncio.Event()
        self.recovering = n
        self.all_recovered = asyncio.Event()
        self.restarted: float | None = None
        self.measuring = False
        self.latencies: list[int] = []


async def publish(ws: WS, count: int, rate: float, start: int, stop: asyncio.Event) -> int:
    """Send ``count`` messages (or until ``stop``) at ``rate`` per second; the last seq."""
    seq = start
    period = 1 / rate if rate else 0
    next_at = time.perf_counter()
    while (count == 0 or seq - start < count) and not stop.is_set():
        seq += 1
        payload = {"seq": seq, "t": time.perf_counter_ns()}
        ws.send(json.dumps({"event": "message", "topic": TOPIC, "subject": "tick",
                            "payload": payload}, separators=(",", ":")))  # fmt: skip
        next_at += period
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return seq


async def caught_up(students: list[Student], offset: int, timeout: float) -> None:
    """Until every student saw ``offset`` (at most ``timeout`` s: the counts tell)."""
    deadline = time.monotonic() + timeout
    while min(s.last for s in students) < offset and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def storm(server: Classroom, again: Classroom, args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
    run = Run(args.clients, args.presence)
    students = [Student(run, token) for token in server.tokens]
    sem = asyncio.Semaphore(100)

    async def open_one(student: Student) -> None:
        async with sem:
            await student.open(url)

    await asyncio.gather(*(open_one(s) for s in students))
    await asyncio.wait_for(run.all_joined.wait(), 120)
    publisher = await connect(url, server.token, lambda data: None)
    publisher.send(json.dumps({"event": "join", "topic": TOPIC, "presence": False}))
    await publish(publisher, args.history, 1000, 0, asyncio.Event())
    await caught_up(students, args.history, 60)

    # The restart: the same history file and port; clients rejoin once it answers.
    await asyncio.to_thread(server.__exit__)
    await asyncio.to_thread(again.__enter__)
    run.restarted = time.perf_counter()
    cpu = (_cpu_s(again.pid), time.process_time())
    publisher = await connect(url, server.token, lambda data: None)
    publisher.send(json.dumps({"event": "join", "topic": TOPIC, "presence": False}))
    stop = asyncio.Event()
    sending = asyncio.ensure_future(publish(publisher, 0, args.rate, args.history, stop))
    run.measuring = True
    await asyncio.gather(*(open_one(s) for s in students))
    with contextlib.suppress(asyncio.TimeoutError):  # the counts tell who never got there
        await asyncio.wait_for(run.all_recovered.wait(), 120)
    cpu = (_cpu_s(again.pid) - cpu[0], time.process_time() - cpu[1])
    recovered = [s.recovered_at - run.restarted for s in students if s.recovered_at is not None]
    remaining = STORM - (time.perf_counter() - run.restarted)
    if remaining > 0:
        await asyncio.sleep(remaining)
    run.measuring = False
    stop.set()
    last = await sending
    await caught_up(students, last, 30)
    latencies = sorted(run.latencies)

    def pct(p: float) -> float | None:
        return latencies[int(p * (len(latencies) - 1))] / 1e6 if latencies else None

    for s in students:
        if s.ws is not None and s.ws.transport is not None:
            s.ws.transport.close()
    return {
        "recovered": len(recovered),
        "all_recovered_s": max(recovered) if len(recovered) == args.clients else None,
        "median_recovered_s": sorted(recovered)[len(recovered) // 2] if recovered else None,
        "exact": sum(1 for s in students if s.ok and s.last == last),
        "refused_joins": sum(s.refused for s in students),
        "live_p50_ms": pct(0.5),
        "live_p99_ms": pct(0.99),
        "live_deliveries": len(latencies),
        "server_cpu_s": cpu[0],
        "generator_cpu_s": cpu[1],
    }


MODES = {
    "batched": {},
    "previous": {"presence_interval": 0, "join_rate": 0},
}


def run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    traits = {"max_connections_per_user": args.clients + 10, **MODES[mode]}
    server = Classroom(args.clients, **traits)
    again = Classroom(0, **traits)
    again.root, again.port, again.token, again.tokens = (
        server.root, server.port, server.token, server.tokens,
    )  # fmt: skip
    with server:
        try:
            result = asyncio.run(storm(server, again, args))
            rss = _rss_kb(again.pid)
            result["server_peak_rss_mb"] = rss / 1024 if rss else None
        finally:
            again.__exit__()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--history", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument(
        "--presence", action=argparse.BooleanOptionalAction, default=True,
        help="whether the clients join with presence (default: yes)",
    )  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"reconnect storm: {args.clients} clients, {args.history} messages of history, "
        f"restart, all rejoin with since while {args.rate:.0f} msg/s are published"
        f"{'' if args.presence else ' (presence off)'}"
    )
    for mode in args.modes:
        r = run(args, mode)
        done = f"{r['all_recovered_s']:.2f} s" if r["all_recovered_s"] is not None else "never"
        p99 = f"{r['live_p99_ms']:.0f} ms" if r["live_p99_ms"] is not None else "-"
        p50 = f"{r['live_p50_ms']:.0f} ms" if r["live_p50_ms"] is not None else "-"
        print(
            f"  {mode:<9} all recovered after {done} (median {r['median_recovered_s']:.2f} s, "
            f"{r['recovered']}/{args.clients}); every offset once and in order: "
            f"{r['exact']}/{args.clients}; joins refused {r['refused_joins']}; "
            f"live latency p50 {p50} p99 {p99} ({r['live_deliveries']:,} deliveries); "
            f"server peak RSS {r['server_peak_rss_mb']:.0f} MB; CPU until all recovered: "
            f"server {r['server_cpu_s']:.1f} s, generator {r['generator_cpu_s']:.1f} s"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
