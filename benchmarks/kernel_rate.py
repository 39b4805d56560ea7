"""How many messages per second one Python client publishes, and one receives.

    python benchmarks/kernel_rate.py [--messages 5000] [--runs 3]

Starts a real Jupyter server with the extension (SQLite history on, rate limit
off), then per run: a receiver process joins the topic, a publisher process
sends ``--messages`` messages of ~200 bytes. Two publishers are measured:
``blocking`` (``Subscription.send`` in a loop: each call waits for its ack)
and ``pipelined`` (the asyncio client with up to 64 unacknowledged). Prints
the median of the runs; each process reports its own CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server

PAYLOAD = {"text": "x" * 180}

RECEIVER = """
import json, sys, threading, time
import jupyter_channels as jc
url, token, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conn = jc.connect(url=url, token=token)
room = conn.join(topic)
done = threading.Event()
seen = []
def got(message):
    seen.append((message.offset, time.perf_counter()))
    if len(seen) == n:
        done.set()
room.on("*", got)
print("ready", flush=True)
ok = done.wait(300)
offsets = [o for o, _ in seen]
print(json.dumps({
    "count": len(seen), "in_order": offsets == sorted(set(offsets)),
    "seconds": seen[-1][1] - seen[0][1] if seen else 0.0,
    "cpu": time.process_time(),
}), flush=True)
conn.close()
"""

PUBLISHER = """
import asyncio, json, sys, time
import jupyter_channels as jc
url, token, topic, n, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
payload = json.loads(sys.argv[6])
if mode == "blocking":
    conn = jc.connect(url=url, token=token)
    room = conn.join(topic)
    start = time.perf_counter()
    for _ in range(n):
        room.send("tick", payload)
    seconds = time.perf_counter() - start
    conn.close()
else:
    async def main():
        async with jc.aconnect(url, token) as conn:
            room = await conn.join(topic)
            window = asyncio.Semaphore(64)
            async def one():
                async with window:
                    await room.send("tick", payload)
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - start
    seconds = asyncio.run(main())
print(json.dumps({"seconds": seconds, "cpu": time.process_time()}), flush=True)
"""


def run_once(server: Server, mode: str, n: int, topic: str) -> dict[str, float]:
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, server.http_url, server.token, topic, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    assert receiver.stdout.readline().strip() == "ready"
    publisher = subprocess.run(
        [sys.executable, "-c", PUBLISHER, server.http_url, server.token, topic, str(n), mode,
         json.dumps(PAYLOAD)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    sent = json.loads(publisher.stdout.splitlines()[-1])
    got = json.loads(receiver.stdout.readline())
    receiver.wait(60)
    if got["count"] != n or not got["in_order"]:
        raise RuntimeError(f"invalid run: received {got['count']} of {n}, in order: {got}")
    return {
        "published/s": n / sent["seconds"],
        "received/s": n / got["seconds"] if got["seconds"] else float("nan"),
        "publisher cpu s": sent["cpu"],
        "receiver cpu s": got["cpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"blocking": [], "pipelined": []}
    with Server(rate_limit=0) as server:
        for run in range(args.runs):
            for mode, runs in results.items():  # alternate the two modes
                runs.append(run_once(server, mode, args.messages, f"bench:{mode}{run}"))
    print(f"kernel: {args.messages} messages of ~200 B, medians of {args.runs} runs")
    for mode, runs in results.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {mode:9} "
            + "  ".join(
                f"{k} {v:,.0f}" if "/s" in k else f"{k} {v:.2f}" for k, v in medians.items()
            )
        )


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
