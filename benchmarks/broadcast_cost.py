"""What one broadcast to N idle connections costs the server, before and after a change,
side by side in one run.

    python benchmarks/broadcast_cost.py --connections 5000 --broadcasts 20 --before REV

Starts two ``jupyter channels serve`` (the package at git revision ``--before``, and the
working tree's), with N idle connections each joined to one topic (presence off) held by
a generator process per server. Then, taking turns A B A B, one message is published to
each and timed until every connection has it: the server's CPU time for that broadcast
(its process's user + system time) and the wall time. Prints the medians, the ratios
after / before and the generators' CPU (1.0 = one core: then the wall time is theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from math import nan
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))

from _revision import describe, revision
from _server import Service

HERE = Path(__file__).parent
TRAITS: dict[str, Any] = {
    "rate_limit": 0,
    "max_queued_bytes": 256 * 1024 * 1024,
    "max_connections_per_user": 100_000,
    "join_rate": 0,
    # The generator answers no pings: its connections must outlast the other side's setup.
    "idle_timeout": 3600,
}


async def generator(url: str, token: str, n: int) -> None:
    """The worker: N subscribers and a publisher; a broadcast per line read on stdin."""
    from wsload import Goal, Publisher, message_frame, open_subscribers

    cfg = {"url": url, "token": token, "target": "project"}
    goal = Goal()
    subs = await open_subscribers(cfg, n, goal)
    pub = Publisher(cfg)
    await pub.open()
    assert pub.ws is not None
    print(json.dumps({"opened": len(subs)}), flush=True)
    loop = asyncio.get_running_loop()
    seq = 0
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
        goal.expect(seq + 1, n)
        cpu0 = time.process_time()
        start = time.perf_counter()
        pub.ws.send(message_frame(seq, "x" * 150))
        await goal.wait(120)
        wall = time.perf_counter() - start
        reached = sum(1 for sub in subs if sub.count == seq + 1 and sub.ok)
        seq += 1
        print(
            json.dumps(
                {
                    "wall_s": wall,
                    "reached": reached,
                    "generator_cpu": (time.process_time() - cpu0) / wall,
                }
            ),
            flush=True,
        )


class Side:
    """One server and its generator."""

    def __init__(self, name: str, pythonpath: str | None, n: int) -> None:
        self.name = name
        self.server = Service(**TRAITS)
        self.server.pythonpath = pythonpath
        self.n = n
        self.results: list[dict[str, float]] = []

    def __enter__(self) -> Side:
        self.server.__enter__()
        url = f"ws://127.0.0.1:{self.server.port}/api/channels/websocket"
        self.gen = subprocess.Popen(
            [sys.executable, __file__, "--generator", url, self.server.token, str(self.n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.gen.stdout is not None
        opened = json.loads(self.gen.stdout.readline())["opened"]
        assert opened == self.n, opened
        self.process = psutil.Process(self.server.pid)
        return self

    def broadcast(self) -> None:
        assert self.gen.stdin is not None
        assert self.gen.stdout is not None
        time.sleep(0.3)  # let the previous one settle
        before = self.process.cpu_times()
        self.gen.stdin.write("go\n")
        self.gen.stdin.flush()
        result = json.loads(self.gen.stdout.readline())
        after = self.process.cpu_times()
        result["server_cpu_ms"] = 1000 * (after.user - before.user + after.system - before.system)
        self.results.append(result)

    def __exit__(self, *exc: object) -> None:
        if self.gen.stdin is not None:
            self.gen.stdin.close()
        self.gen.wait(60)
        self.server.__exit__()
        subprocess.run(["rm", "-rf", str(self.server.root)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--before", default="HEAD", help="the git revision to compare with")
    parser.add_argument("--generator", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.generator:
        url, token, n = args.generator
        asyncio.run(generator(url, token, int(n)))
        return
    n = args.connections
    with revision(args.before) as old:
        before = Side(f"before ({describe(args.before)})", str(old), n)
        after = Side("after (working tree)", None, n)
        with before, after:
            for _ in range(args.broadcasts):
                before.broadcast()
                after.broadcast()
    load = os.getloadavg()
    print(
        f"broadcast_cost: one message to {n} idle joined connections, "
        f"{args.broadcasts} broadcasts each, taking turns; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    figures = ("server_cpu_ms", "wall_s", "generator_cpu")
    print(f"{'':24}" + "".join(f" {f:>14}" for f in figures) + f" {'reached all':>12}")
    medians = {}
    for side in (before, after):
        medians[side.name] = {f: statistics.median(r[f] for r in side.results) for f in figures}
        every = sum(1 for r in side.results if r["reached"] == n)
        print(
            f"{side.name:24}"
            + "".join(f" {medians[side.name][f]:14.3f}" for f in figures)
            + f" {every:>6}/{len(side.results)}"
        )
    # (CPU time comes in clock ticks: a tiny run may measure none.)
    ratio = {
        f: medians[after.name][f] / medians[before.name][f] if medians[before.name][f] else nan
        for f in figures[:2]
    }
    print(f"{'after / before':24}" + "".join(f" {ratio[f]:14.2f}" for f in figures[:2]))


if __name__ == "__main__":
    main()
