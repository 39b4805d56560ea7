"""One topic, 10,000 subscribers: how long until every one of them has a message.

    python benchmarks/broadcast_10k.py --subscribers 10000 --processes 4 --seconds 20

Subscribers (presence off) are spread over ``--processes`` generator processes; a
publisher sends one message every ``--every`` seconds for ``--seconds``. For each
message the time from its publication until the last subscriber received it
(wall clock, one machine) is taken; reported are its p50 and p99 over the messages,
the messages every subscriber got, and each generator's CPU. The server admits every
join at once (``join_rate`` 0): the subscribers connect before anything is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _server import Service
from presence_storm import _cpu_s
from wsload import connect

TOPIC = "bench:broadcast"
SEQ_T = re.compile(rb'"seq":(\d+),"t":(\d+)')


def subscribers(url: str, token: str, n: int, ready: Any, results: Any, seconds: float) -> None:
    """One generator process: ``n`` subscribers; per seq, the time the last one got it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run() -> dict[str, Any]:
        last: dict[int, int] = {}
        counts: dict[int, int] = {}
        joined = [0]
        all_joined = asyncio.Event()

        def frame(data: bytes) -> None:
            match = SEQ_T.search(data)
            if match is None:
                if data.startswith(b'{"event":"reply"') and b'"ok"' in data:
                    joined[0] += 1
                    if joined[0] == n:
                        all_joined.set()
                return
            seq = int(match.group(1))
            last[seq] = time.time_ns()
            counts[seq] = counts.get(seq, 0) + 1

        sem = asyncio.Semaphore(200)
        join = json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "presence": False})

        async def one() -> None:
            async with sem:
                ws = await connect(url, token, frame)
                ws.send(join)

        await asyncio.gather(*(one() for _ in range(n)))
        await asyncio.wait_for(all_joined.wait(), 300)
        ready.put(n)
        cpu0 = time.process_time()
        await asyncio.sleep(seconds + 5)
        return {
            "last": last,
            "complete": [seq for seq, c in counts.items() if c == n],
            "cpu_s": time.process_time() - cpu0,
        }

    results.put(asyncio.run(run()))


async def publish(url: str, token: str, count: int, every: float) -> dict[int, int]:
    ws = await connect(url, token, lambda data: None)
    ws.send(json.dumps({"event": "join", "topic": TOPIC, "presence": False}))
    await asyncio.sleep(0.5)
    sent: dict[int, int] = {}
    for seq in range(count):
        t = time.time_ns()
        sent[seq] = t
        ws.send(json.dumps({"event": "message", "topic": TOPIC, "subject": "tick",
                            "payload": {"seq": seq, "t": t, "pad": "x" * 100}},
                           separators=(",", ":")))  # fmt: skip
        await asyncio.sleep(every)
    await asyncio.sleep(2)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=0.5)
    args = parser.parse_args()
    count = int(args.seconds / args.every)
    traits = {"max_connections_per_user": args.subscribers + 10, "join_rate": 0}
    with Service(**traits) as server:
        url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
        ready: Any = multiprocessing.Queue()
        results: Any = multiprocessing.Queue()
        share = [args.subscribers // args.processes] * args.processes
        share[0] += args.subscribers - sum(share)
        procs = [
            multiprocessing.Process(
                target=subscribers, args=(url, server.token, n, ready, results, args.seconds)
            )
            for n in share
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=600)
        cpu0 = _cpu_s(server.pid)
        sent = asyncio.run(publish(url, server.token, count, args.every))
        server_cpu = _cpu_s(server.pid) - cpu0
        got = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
    complete = set.intersection(*(set(r["complete"]) for r in got))
    delays = sorted(
        (max(r["last"][seq] for r in got) - sent[seq]) / 1e6 for seq in sorted(complete)
    )

    def pct(p: float) -> float:
        return delays[int(p * (len(delays) - 1))] if delays else float("nan")

    cpus = ", ".join(f"{r['cpu_s']:.1f}" for r in got)
    print(
        f"broadcast_10k: {args.subscribers} subscribers in {args.processes} processes, "
        f"one message every {args.every:g} s for {args.seconds:g} s\n"
        f"  until every subscriber has it: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms "
        f"(max {pct(1.0):.0f} ms); messages every subscriber got {len(complete)}/{count}; "
        f"server CPU {server_cpu:.1f} s; generator CPU {cpus} s"
    )


if __name__ == "__main__":
    main()
