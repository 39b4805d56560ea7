"""Everyone at once: N clients open their sockets within a few seconds and join one topic.

    python benchmarks/connect_storm.py --clients 10000 --spread 3

Runs against a fresh ``jupyter channels serve`` (its defaults: join admission on).
Client i opens its socket at i / N x ``--spread`` seconds; a connection that fails is
tried again with doubling, jittered backoff (as the bundled clients do), and a join
answered ``unavailable`` with ``retry_after`` is sent again after that wait plus up
to a quarter of it. Joins are made with presence off (the presence cost of a room
is what ``presence_storm.py`` measures). Reported: the time until all N are joined,
how many connections and joins had to be retried, how many gave up (none may),
and the server's CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _server import Service
from presence_storm import _cpu_s, _rss_kb
from wsload import WS, connect

TOPIC = "bench:everyone"
JOIN = json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "presence": False})
MAX_ATTEMPTS = 12


class Client:
    def __init__(self, state: State) -> None:
        self.state = state
        self.ws: WS | None = None
        self.joined = False

    def frame(self, data: bytes) -> None:
        if not data.startswith(b'{"event":"reply"'):
            return
        payload = json.loads(data)["payload"]
        if payload["status"] == "ok":
            if not self.joined:
                self.joined = True
                self.state.joined += 1
                if self.state.joined == self.state.n:
                    self.state.done.set()
            return
        response = payload["response"]
        if "retry_after" in response:
            self.state.join_retries += 1
            delay = response["retry_after"] / 1000 * (1 + random.random() / 4)
            asyncio.get_running_loop().call_later(delay, self.join)
        else:
            self.state.failed_joins += 1

    def join(self) -> None:
        if self.ws is not None and self.ws.transport is not None:
            self.ws.send(JOIN)

    async def open(self, url: str, token: str) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                self.ws = await asyncio.wait_for(connect(url, token, self.frame), 30)
            except (OSError, ConnectionError, asyncio.TimeoutError):
                self.state.connect_retries += 1
                await asyncio.sleep(min(10.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
                continue
            self.join()
            return
        self.state.gave_up += 1


class State:
    def __init__(self, n: int) -> None:
        self.n = n
        self.joined = 0
        self.done = asyncio.Event()
        self.connect_retries = 0
        self.join_retries = 0
        self.failed_joins = 0
        self.gave_up = 0


async def storm(url: str, token: str, pid: int, n: int, spread: float) -> dict[str, Any]:
    state = State(n)
    clients = [Client(state) for _ in range(n)]
    loop = asyncio.get_running_loop()
    cpu0 = _cpu_s(pid)
    start = time.perf_counter()

    async def later(client: Client, at: float) -> None:
        await asyncio.sleep(max(0.0, at - (loop.time() - t0)))
        await client.open(url, token)

    t0 = loop.time()
    tasks = [asyncio.ensure_future(later(c, spread * i / n)) for i, c in enumerate(clients)]
    await asyncio.gather(*tasks)
    with contextlib.suppress(asyncio.TimeoutError):  # the counts tell who is missing
        await asyncio.wait_for(state.done.wait(), 120)
    elapsed = time.perf_counter() - start
    result = {
        "joined": state.joined,
        "all_joined_s": elapsed if state.joined == n else None,
        "connect_retries": state.connect_retries,
        "join_retries": state.join_retries,
        "failed_joins": state.failed_joins,
        "gave_up": state.gave_up,
        "server_cpu_s": _cpu_s(pid) - cpu0,
    }
    for client in clients:
        if client.ws is not None and client.ws.transport is not None:
            client.ws.transport.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=3.0)
    parser.add_argument(
        "--join-rate", type=float, default=None, help="the server's join_rate (its default)"
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    traits: dict[str, Any] = {"max_connections_per_user": args.clients + 10}
    if args.join_rate is not None:
        traits["join_rate"] = args.join_rate
    with Service(**traits) as server:
        url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
        r = asyncio.run(storm(url, server.token, server.pid, args.clients, args.spread))
        rss = _rss_kb(server.pid)
    done = f"{r['all_joined_s']:.1f} s" if r["all_joined_s"] is not None else "never"
    rate = "default" if args.join_rate is None else f"{args.join_rate:g}"
    print(
        f"connect storm: {args.clients} clients open their sockets within {args.spread:g} s "
        f"and join (presence off, join_rate {rate})\n"
        f"  all joined after {done} ({r['joined']}/{args.clients}); connections retried "
        f"{r['connect_retries']}, joins told to come back {r['join_retries']}, joins failed "
        f"{r['failed_joins']}, gave up {r['gave_up']}; server CPU {r['server_cpu_s']:.1f} s, "
        f"peak RSS {(rss or 0) / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
