"""A classroom joining at once: N clients join one topic within one second, presence on.

    python benchmarks/presence_storm.py --clients 300 1000

Each size runs on a fresh ``jupyter channels serve`` twice, side by side: ``batched``
(the defaults: ``presence_interval`` 0.1 s, join admission on) and ``previous``
(``presence_interval`` 0, ``join_rate`` 0: one diff per join to every member, every
join admitted at once). Every client has its own user. It reports the presence frames
and bytes each client received, the size of the final ``presence_state`` (N members),
and the time from the first join until every client's presence lists all N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _server import Service
from wsload import WS, connect

TOPIC = "bench:classroom"
REF = re.compile(rb'"phx_ref":"([^"]+)"')
WINDOW = 1.0  # seconds over which the joins are sent


class Classroom(Service):
    """The service with one token per client, each its own user."""

    def __init__(self, clients: int, **traits: Any) -> None:
        super().__init__(**traits)
        self.tokens = [f"student-{i}-" + os.urandom(4).hex() for i in range(clients)]

    def command(self) -> list[str]:
        command = super().command()
        tokens = self.root / "tokens.json"
        users = {token: {"username": f"student{i}"} for i, token in enumerate(self.tokens)}
        users[self.token] = {"username": "bench"}
        tokens.write_text(json.dumps(users))
        return command


class Member:
    """One client: joins, applies presence as Phoenix does, counts what it received."""

    def __init__(self, n: int, done: asyncio.Event, counter: list[int]) -> None:
        self.n = n
        self.done = done
        self.counter = counter
        self.frames = 0
        self.bytes = 0
        self.members: set[bytes] = set()  # phx_refs
        self.complete_at: float | None = None
        self.refused = 0
        self.ws: WS | None = None

    def frame(self, data: bytes) -> None:
        if data.startswith(b'{"event":"presence_'):
            self.frames += 1
            self.bytes += len(data)
            # Refs read with a regular expression where that is exact (a state, a diff
            # with no leaves): parsing every frame would make the generator the bottleneck.
            if data.startswith(b'{"event":"presence_state"'):
                self.members = set(REF.findall(data))
            elif data.endswith(b'"leaves":{}}}'):
                self.members.update(REF.findall(data))
            else:
                payload = json.loads(data)["payload"]
                for entry in payload["joins"].values():
                    for meta in entry["metas"]:
                        self.members.add(meta["phx_ref"].encode())
                for entry in payload["leaves"].values():
                    for meta in entry["metas"]:
                        self.members.discard(meta["phx_ref"].encode())
            if self.complete_at is None and len(self.members) >= self.n:
                self.complete_at = time.perf_counter()
                self.counter[0] -= 1
                if self.counter[0] == 0:
                    self.done.set()
        elif data.startswith(b'{"event":"reply"') and b'"retry_after"' in data:
            self.refused += 1
            wait = json.loads(data)["payload"]["response"]["retry_after"] / 1000
            asyncio.get_running_loop().call_later(wait * (1 + random.random() / 4), self.join)

    def join(self) -> None:
        assert self.ws is not None
        self.ws.send(json.dumps({"event": "join", "topic": TOPIC, "ref": "j"}))


async def storm(url: str, tokens: list[str], http_url: str, token: str, pid: int) -> dict[str, Any]:
    n = len(tokens)
    done = asyncio.Event()
    counter = [n]
    members = [Member(n, done, counter) for _ in range(n)]
    sem = asyncio.Semaphore(100)

    async def open_one(member: Member, token: str) -> None:
        async with sem:
            member.ws = await connect(url, token, member.frame)

    await asyncio.gather(*(open_one(m, t) for m, t in zip(members, tokens, strict=True)))
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    server_cpu0 = _cpu_s(pid)
    start = time.perf_counter()
    for i, member in enumerate(members):
        loop.call_at(loop.time() + WINDOW * i / n, member.join)
    with contextlib.suppress(asyncio.TimeoutError):  # the counts tell who never got there
        await asyncio.wait_for(done.wait(), 60)
    finished = [m.complete_at - start for m in members if m.complete_at is not None]
    await asyncio.sleep(0.5)  # the last diffs
    state_bytes = await asyncio.to_thread(final_state_bytes, http_url, token)
    frames = [m.frames for m in members]
    sizes = [m.bytes for m in members]
    for m in members:
        if m.ws is not None and m.ws.transport is not None:
            m.ws.transport.close()
    return {
        "clients": n,
        "consistent": len(finished),
        "all_listed_s": max(finished) if len(finished) == n else None,
        "frames_total": sum(frames),
        "frames_per_client_mean": statistics.mean(frames),
        "frames_per_client_max": max(frames),
        "bytes_total": sum(sizes),
        "bytes_per_client_mean": statistics.mean(sizes),
        "refused_joins": sum(m.refused for m in members),
        "final_state_bytes": state_bytes,
        "generator_cpu_s": time.process_time() - cpu0,
        "server_cpu_s": _cpu_s(pid) - server_cpu0,
    }


def final_state_bytes(url: str, token: str) -> int:
    """Bytes of a ``presence_state`` frame listing everyone now on the topic."""
    import urllib.request

    request = urllib.request.Request(
        url + f"api/channels/topics/{TOPIC}/presence",
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    text = json.dumps(
        {"event": "presence_state", "topic": TOPIC, "payload": payload}, separators=(",", ":")
    )
    return len(text.encode())


MODES = {
    "batched": {},
    "previous": {"presence_interval": 0, "join_rate": 0},
}


def run(clients: int, mode: str) -> dict[str, Any]:
    with Classroom(clients, max_connections_per_user=clients + 10, **MODES[mode]) as server:
        url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
        result = asyncio.run(storm(url, server.tokens, server.http_url, server.token, server.pid))
        rss = _rss_kb(server.pid)
        result["server_rss_mb"] = rss / 1024 if rss else None
    return result


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"presence storm: N clients join {TOPIC} within {WINDOW:.0f} s, presence on")
    for clients in args.clients:
        for mode in args.modes:
            r = run(clients, mode)
            listed = f"{r['all_listed_s']:.2f} s" if r["all_listed_s"] is not None else "never"
            ratio = r["bytes_per_client_mean"] / r["final_state_bytes"]
            print(
                f"  N={clients:<5} {mode:<9} frames/client {r['frames_per_client_mean']:7.1f} "
                f"(max {r['frames_per_client_max']}), total {r['frames_total']:,} frames "
                f"{r['bytes_total'] / 1e6:.1f} MB; bytes/client {r['bytes_per_client_mean']:,.0f} "
                f"= {ratio:.2f} x final state ({r['final_state_bytes']:,} B); "
                f"all list N after {listed} ({r['consistent']}/{clients}); "
                f"joins refused {r['refused_joins']}; server peak RSS "
                f"{r['server_rss_mb']:.0f} MB; CPU server {r['server_cpu_s']:.1f} s, "
                f"generator {r['generator_cpu_s']:.1f} s"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
