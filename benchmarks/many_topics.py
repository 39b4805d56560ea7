"""Many topics against one: 1,000 topics of 10 subscribers each, 100 publishers.

    python benchmarks/many_topics.py [--topics 1000] [--subscribers 10] [--publishers 100]
        [--messages 50] [--one-messages 1] [--runs 3] [--processes 2] [--targets extension]
        [--before REV]

Starts the extension (``--targets extension,service`` adds ``jupyter channels
serve``) with ``fanout.py``'s settings: no rate limit, every join admitted at
once (``join_rate`` 0). ``topics x subscribers`` subscriber connections are
opened once, spread over ``--processes`` generator processes; each joins two
topics (presence off): its own one of the ``--topics`` and the one shared topic.
Then the two cases take turns, A B A B A B:

- many: every publisher joins up to 10 of the topics, spread over all of them, and
  sends ``--messages`` acknowledged ``message`` frames round-robin over its
  topics, keeping at most 64 unacknowledged (as ``wsload.py``'s fan-out
  publisher does); each reaches the 10 subscribers of its topic.
- one: the same publishers and subscriber connections, all on the shared topic;
  each publisher sends ``--one-messages`` (every one reaches every subscriber,
  so the same count as many would be a thousand times the deliveries).

Reported per case: acked msgs/s (all messages / time until the last reply: the
store's group commit), deliveries/s (all deliveries / time until the last one
arrived) and the ratio many/one; then the generator processes' CPU (1.0 = one
core saturated: the figure is then the generator's, not the server's). A run in
which any subscriber got other than its share is marked invalid.

``--before REV`` runs every target twice, one after the other: first on the package
as it was at git revision REV, then on the working tree's, and prints the ratios
after / before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _revision import describe, revision
from fanout import TRAITS, Targets
from wsload import REF, SEQ, connect, cpu

ONE = "bench:one"
WINDOW = 64


def topic(run: int, index: int) -> str:
    return f"bench:many{run}:{index}"


def join(name: str, ref: str = "j") -> str:
    return json.dumps({"event": "join", "topic": name, "ref": ref, "presence": False})


def subscriber_process(
    url: str,
    token: str,
    indices: list[int],
    per_topic: int,
    runs: int,
    commands: Any,
    results: Any,
) -> None:
    """Subscribers of ``indices`` (one connection each), joined to their topic of every
    run and to the shared topic; per command, count deliveries until each has its share."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        counts = [0] * len(indices)
        expected = [0] * len(indices)
        state = {"pending": 0, "last": 0.0, "joined": 0}
        done = asyncio.Event()
        joins = runs + 1

        def handler(i: int) -> Any:
            def frame(data: bytes) -> None:
                if SEQ.search(data) is None:
                    if data.startswith(b'{"event":"reply"') and b'"ok"' in data:
                        state["joined"] += 1
                        if state["joined"] == joins * len(indices):
                            done.set()
                    return
                counts[i] += 1
                state["last"] = time.time()
                if counts[i] == expected[i]:
                    state["pending"] -= 1
                    if state["pending"] == 0:
                        done.set()

            return frame

        sem = asyncio.Semaphore(200)

        async def one(i: int, index: int) -> Any:
            async with sem:
                ws = await connect(url, token, handler(i))
                for run in range(runs):
                    ws.send(join(topic(run, index // per_topic)))
                ws.send(join(ONE))
                return ws

        sockets = await asyncio.gather(*(one(i, index) for i, index in enumerate(indices)))
        await asyncio.wait_for(done.wait(), 600)
        results.put({"ready": len(sockets)})
        while True:
            command = await asyncio.to_thread(commands.get)
            if command is None:
                break
            shares = command["shares"]  # subscriber index -> messages it must get
            for i, index in enumerate(indices):
                counts[i] = 0
                expected[i] = shares[index] if isinstance(shares, list) else shares
            state["pending"] = sum(1 for e in expected if e)
            state["last"] = 0.0
            done.clear()
            cpu0, t0 = cpu(), time.time()
            results.put({"armed": True})
            if state["pending"]:
                with contextlib.suppress(asyncio.TimeoutError):  # the counts tell what was missed
                    await asyncio.wait_for(done.wait(), command["timeout"])
            results.put(
                {
                    "last": state["last"],
                    "valid": all(c == e for c, e in zip(counts, expected, strict=True)),
                    "deliveries": sum(counts),
                    "cpu_s": cpu() - cpu0,
                    "t0": t0,
                }
            )

    asyncio.run(main())


async def publish(
    url: str, token: str, plans: list[list[str]], messages: int
) -> tuple[float, float, float]:
    """Each publisher joins its topics of ``plans`` and sends ``messages`` round-robin
    over them, at most ``WINDOW`` unacknowledged; returns start, last ack (wall clock)
    and the process's CPU seconds over that time."""
    acked = [0] * len(plans)
    events = [asyncio.Event() for _ in plans]
    joined = [0] * len(plans)
    all_joined = asyncio.Event()
    last_ack = [0.0]

    def handler(p: int) -> Any:
        def frame(data: bytes) -> None:
            if REF.search(data):
                acked[p] += 1
                last_ack[0] = time.time()
                events[p].set()
            elif data.startswith(b'{"event":"reply"') and b'"ok"' in data:
                joined[p] += 1
                if sum(joined) == sum(len(t) for t in plans):
                    all_joined.set()

        return frame

    sockets = [await connect(url, token, handler(p)) for p in range(len(plans))]
    for ws, topics in zip(sockets, plans, strict=True):
        for name in topics:
            ws.send(join(name))
    await asyncio.wait_for(all_joined.wait(), 120)
    pad = "x" * 150

    async def one(p: int) -> None:
        ws, topics = sockets[p], plans[p]
        for seq in range(messages):
            while seq - acked[p] >= WINDOW:
                events[p].clear()
                await events[p].wait()
            frame = {
                "event": "message",
                "topic": topics[seq % len(topics)],
                "subject": "tick",
                "payload": {"seq": seq, "pad": pad},
                "ref": f"p{seq}",
            }
            ws.send(json.dumps(frame, separators=(",", ":")))
        while acked[p] < messages:
            events[p].clear()
            await events[p].wait()

    cpu0, start = cpu(), time.time()
    await asyncio.wait_for(asyncio.gather(*(one(p) for p in range(len(plans)))), 600)
    used = cpu() - cpu0
    for ws in sockets:
        assert ws.transport is not None
        ws.transport.close()
    return start, last_ack[0], used


def plans_for(args: argparse.Namespace, run: int) -> list[list[str]]:
    """Publisher p's topics: p, p + P, p + 2P, ... (at most 10, the per-connection cap)."""
    per = min(10, -(-args.topics // args.publishers))
    return [
        [topic(run, (p + k * args.publishers) % args.topics) for k in range(per)]
        for p in range(args.publishers)
    ]


def shares_for(args: argparse.Namespace, plans: list[list[str]], run: int) -> list[int]:
    """Subscriber index -> messages it must get in the many-topics case."""
    per_topic: dict[str, int] = defaultdict(int)
    for topics in plans:
        for seq in range(args.messages):
            per_topic[topics[seq % len(topics)]] += 1
    return [per_topic[topic(run, i // args.subscribers)] for i in range(args.connections)]


def one_case(
    args: argparse.Namespace, url: str, token: str, run: int, case: str, workers: list[Any]
) -> dict[str, Any]:
    if case == "many":
        plans = plans_for(args, run)
        shares: Any = shares_for(args, plans, run)
        messages = args.messages
    else:
        plans = [[ONE]] * args.publishers
        messages = args.one_messages
        shares = messages * args.publishers
    for commands, _, _ in workers:
        commands.put({"shares": shares, "timeout": 300})
    for _, results, _ in workers:
        assert results.get(timeout=60) == {"armed": True}
    start, last_ack, pub_cpu = asyncio.run(publish(url, token, plans, messages))
    got = [results.get(timeout=400) for _, results, _ in workers]
    total = messages * args.publishers
    deliveries = sum(g["deliveries"] for g in got)
    wall = max(g["last"] for g in got) - start
    return {
        "acked msgs/s": total / (last_ack - start),
        "deliveries/s": deliveries / wall,
        "publisher CPU": pub_cpu / (last_ack - start),
        "subscriber CPU": max(g["cpu_s"] for g in got) / wall,
        "valid": all(g["valid"] for g in got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10, help="per topic")
    parser.add_argument("--publishers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=50, help="per publisher, many topics")
    parser.add_argument("--one-messages", type=int, default=1, help="per publisher, one topic")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="subscriber processes")
    parser.add_argument("--targets", default="extension", help="extension,service")
    parser.add_argument("--before", help="also run on the package at this git revision, first")
    args = parser.parse_args()
    args.connections = args.topics * args.subscribers
    targets = tuple(args.targets.split(","))
    per = min(10, -(-args.topics // args.publishers))
    traits = {
        **TRAITS,
        "max_topics_per_connection": max(per, args.runs + 1),
        # The generator answers no pings: on a busy machine, opening and joining 10,000
        # connections takes longer than idle_timeout, which would close the first ones.
        "idle_timeout": 3600,
    }
    print(
        f"many_topics: {args.topics} topics x {args.subscribers} subscribers "
        f"({args.connections} connections in {args.processes} processes, each on its topic "
        f"and the shared one), {args.publishers} publishers; many: {args.messages} msgs "
        f"each, one: {args.one_messages} msgs each; medians of {args.runs} runs"
    )
    with contextlib.ExitStack() as stack:
        sides: list[tuple[str, str | None]] = [("", None)]
        if args.before:
            old = stack.enter_context(revision(args.before))
            sides.insert(0, (f"@{describe(args.before)}", str(old)))
        print(f"{'target':18} {'figure':16} {'many':>12} {'one':>12} {'many/one':>9}")
        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for target in targets:
            for suffix, pythonpath in sides:
                results[target + suffix] = run_target(args, traits, target, pythonpath)
                report(target + suffix, results[target + suffix])
            if args.before:
                after, before = (results[target + suffix] for suffix, _ in reversed(sides))
                for figure in ("acked msgs/s", "deliveries/s"):
                    for case in ("many", "one"):
                        ratio = median(after, case, figure) / median(before, case, figure)
                        print(f"{target:18} {figure + ' ' + case:28} after/before {ratio:6.2f}")


def median(figures: dict[str, list[dict[str, Any]]], case: str, figure: str) -> float:
    return statistics.median(r[figure] for r in figures[case])


def run_target(
    args: argparse.Namespace, traits: dict[str, Any], target: str, pythonpath: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Start ``target`` (the package on ``pythonpath`` first, if given) and run both cases."""
    servers = Targets(traits, only=(target,))
    getattr(servers, target).pythonpath = pythonpath
    with servers:
        url, token, _ = servers.where(target)
        ctx = multiprocessing.get_context("spawn")
        workers = []
        for w in range(args.processes):
            indices = list(range(w, args.connections, args.processes))
            commands, results = ctx.Queue(), ctx.Queue()
            proc = ctx.Process(
                target=subscriber_process,
                args=(url, token, indices, args.subscribers, args.runs, commands, results),
            )
            proc.start()
            workers.append((commands, results, proc))
        for _, results, _ in workers:
            results.get(timeout=900)
        figures: dict[str, list[dict[str, Any]]] = {"many": [], "one": []}
        for run in range(args.runs):
            for case in ("many", "one"):  # A B A B A B
                figures[case].append(one_case(args, url, token, run, case, workers))
        for commands, _, proc in workers:
            commands.put(None)
            proc.join(60)
        return figures


def report(target: str, figures: dict[str, list[dict[str, Any]]]) -> None:
    for figure in ("acked msgs/s", "deliveries/s", "publisher CPU", "subscriber CPU"):
        many, one = (statistics.median(r[figure] for r in figures[c]) for c in ("many", "one"))
        print(f"{target:18} {figure:16} {many:12,.2f} {one:12,.2f} {many / one:9.2f}")
    invalid = [c for c, rs in figures.items() for r in rs if not r["valid"]]
    if invalid:
        print(f"{target:18} INVALID runs: {', '.join(invalid)}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
