"""Fan-out across servers: one publisher on server 1, subscribers spread over every server.

    python benchmarks/cross_server.py [--servers 3] [--subscribers 30]
        [--messages 2000] [--runs 3] [--broker redis|local]

Starts ``redis-server`` (on a free port, in a temporary directory; Debian's
package ``redis-server``) and ``--servers`` Jupyter servers on it (rate limit
off). Per run: one process holds ``--subscribers`` connections, subscriber
``i`` on server ``i % servers``, all joined to one topic; a publisher on
server 1 sends ``--messages`` messages of ~200 bytes with the asyncio client
(up to 64 unacknowledged). Every subscriber must receive every message, in
offset order. Reported: messages/s published, deliveries/s (messages times
subscribers, from the first send to the last delivery), and the latency from
send to delivery (p50, p99), as the median of the runs. Compare
``--servers 1`` with ``--servers 3``; ``--broker local --servers 1`` is the
same scenario on the embedded broker, without Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server, free_port

PAD = "x" * 160

SUBSCRIBERS = """
import asyncio, json, sys, time
import jupyter_channels as jc
urls, token, topic, n = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
count = int(sys.argv[5])

async def subscriber(url, seen, ready):
    async with jc.aconnect(url, token) as conn:
        room = await conn.join(topic)
        ready.set()
        async for message in room:
            seen.append((message.offset, time.time_ns(), message.payload["t"]))
            if len(seen) == n:
                return

async def main():
    seen = [[] for _ in range(count)]
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.ensure_future(subscriber(urls[i % len(urls)], seen[i], readies[i]))
             for i in range(count)]
    await asyncio.gather(*(r.wait() for r in readies))
    print("ready", flush=True)
    done, pending = await asyncio.wait(tasks, timeout=600)
    for task in pending:
        task.cancel()
    latencies = sorted((got - sent) / 1e6 for s in seen for _, got, sent in s)
    print(json.dumps({
        "counts": [len(s) for s in seen],
        "in_order": all([o for o, _, _ in s] == sorted(set(o for o, _, _ in s)) for s in seen),
        "last": max(got for s in seen for _, got, _ in s) if latencies else 0,
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "cpu": time.process_time(),
    }), flush=True)

asyncio.run(main())
"""

PUBLISHER = """
import asyncio, json, sys, time
import jupyter_channels as jc
url, token, topic, n, pad = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

async def main():
    async with jc.aconnect(url, token) as conn:
        room = await conn.join(topic)
        window = asyncio.Semaphore(64)
        async def one():
            async with window:
                await room.send("tick", {"t": time.time_ns(), "pad": pad})
        first = time.time_ns()
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return first, time.perf_counter() - start

first, seconds = asyncio.run(main())
print(json.dumps({"first": first, "seconds": seconds, "cpu": time.process_time()}), flush=True)
"""


class Redis:
    """``redis-server`` on a free port in a temporary directory (no persistence)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="channels-bench-redis-"))
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_once(servers: list[Server], n: int, count: int, topic: str) -> dict[str, float]:
    token = servers[0].token
    urls = [server.http_url for server in servers]
    subscribers = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBERS, json.dumps(urls), token, topic, str(n), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert subscribers.stdout is not None
    assert subscribers.stdout.readline().strip() == "ready"
    publisher = subprocess.run(
        [sys.executable, "-c", PUBLISHER, urls[0], token, topic, str(n), PAD],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    sent = json.loads(publisher.stdout.splitlines()[-1])
    got = json.loads(subscribers.stdout.readline())
    subscribers.wait(60)
    if got["counts"] != [n] * count or not got["in_order"]:
        raise RuntimeError(f"invalid run: received {got['counts']} of {n} each; {got}")
    return {
        "published/s": n / sent["seconds"],
        "deliveries/s": n * count / ((got["last"] - sent["first"]) / 1e9),
        "latency p50 ms": got["p50"],
        "latency p99 ms": got["p99"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=30)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--broker", choices=["redis", "local"], default="redis")
    args = parser.parse_args()
    if args.broker == "local" and args.servers != 1:
        parser.error("--broker local serves one server only")
    # Every server shares one token, so one client process can talk to all of them.
    token = "bench-" + os.urandom(6).hex()
    with ExitStack() as stack:
        traits: dict[str, object] = {"rate_limit": 0}
        if args.broker == "redis":
            redis = Redis()
            stack.callback(redis.close)
            traits["broker_url"] = redis.url
        servers = []
        for _ in range(args.servers):
            server = Server(**traits)
            server.token = token
            servers.append(stack.enter_context(server))
        runs = [
            run_once(servers, args.messages, args.subscribers, f"bench:fanout{run}")
            for run in range(args.runs)
        ]
    print(
        f"cross_server: {args.broker} broker, {args.servers} server(s), "
        f"{args.subscribers} subscribers, {args.messages} messages of ~200 B, "
        f"medians of {args.runs} runs"
    )
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        "  "
        + "  ".join(f"{k} {v:,.0f}" if "/s" in k else f"{k} {v:.1f}" for k, v in medians.items())
    )


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
