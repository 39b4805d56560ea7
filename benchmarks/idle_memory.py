"""Where an idle joined connection's memory goes, measured with tracemalloc.

    python benchmarks/idle_memory.py --connections 2000 [--target service|extension]

Starts ``jupyter channels serve`` (or ``jupyter server`` with the extension) under
tracemalloc, takes a snapshot, opens N idle connections that each join one topic
(presence off, as the fanout benchmark's), takes another, and prints the difference
per connection: in total, by source file (Tornado, asyncio, this package, ...) and by
the lines that allocated most. Also the RSS growth
per connection, as the fanout benchmark measures it (tracemalloc itself costs memory,
so this RSS is above the one without it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _server import Server, Service
from wsload import WS, connect

TOPIC = "bench:idle"

#: Run inside the server process: snapshots on SIGUSR2, into SNAPSHOTS_PREFIX<n>.
TRACE = """
import os, signal, sys, tracemalloc
tracemalloc.start(int(os.environ["TRACE_DEPTH"]))
count = [0]
def dump(signum, frame):
    count[0] += 1
    tracemalloc.take_snapshot().dump(os.environ["SNAPSHOTS_PREFIX"] + str(count[0]))
signal.signal(signal.SIGUSR2, dump)
"""

#: Then the server itself, with the command line's arguments.
MAIN = {
    "service": "from jupyter_channels.cli import main\nsys.exit(main(sys.argv[1:]))\n",
    "extension": "from jupyter_server.serverapp import main\nsys.exit(main())\n",
}


class TracedService(Service):
    def command(self) -> list[str]:
        command = super().command()
        # [python, -m, jupyter_channels.cli, serve, ...] -> [python, -c, WRAPPER, serve, ...]
        return [command[0], "-c", TRACE + MAIN["service"], *command[3:]]


class TracedExtension(Server):
    def command(self) -> list[str]:
        command = super().command()
        # [python, -m, jupyter_server, ...] -> [python, -c, WRAPPER, ...]
        return [command[0], "-c", TRACE + MAIN["extension"], *command[3:]]


TRACED: dict[str, type[Server]] = {"service": TracedService, "extension": TracedExtension}


def snapshot(server: Server, n: int) -> tracemalloc.Snapshot:
    path = server.root / f"snapshot{n}"
    server.proc.send_signal(signal.SIGUSR2)  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    last = -1
    while time.monotonic() < deadline:  # written once its size stops changing
        size = path.stat().st_size if path.exists() else -1
        if size > 0 and size == last:
            return tracemalloc.Snapshot.load(str(path))
        last = size
        time.sleep(0.5)
    raise TimeoutError("no snapshot")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_idle(url: str, token: str, n: int) -> list[WS]:
    sockets: list[WS] = []
    sem = asyncio.Semaphore(100)
    join = json.dumps({"event": "join", "topic": TOPIC, "ref": "j", "presence": False})

    async def one() -> None:
        async with sem:
            ws = await connect(url, token, lambda data: None)
            ws.send(join)
            sockets.append(ws)

    await asyncio.gather(*(one() for _ in range(n)))
    return sockets


def group(stats: list[tracemalloc.StatisticDiff]) -> dict[str, int]:
    """Bytes by where the allocating file lives."""
    out: dict[str, int] = {}
    for stat in stats:
        name = stat.traceback[0].filename
        for marker in ("site-packages/", "src/", "lib/python3"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        out[name] = out.get(name, 0) + stat.size_diff
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--target", choices=sorted(TRACED), default="service")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Every join admitted at once: these joins do not come back after retry_after.
    traits: dict[str, Any] = {"max_connections_per_user": args.connections + 10, "join_rate": 0}
    server = TRACED[args.target](**traits)
    os.environ["TRACE_DEPTH"] = str(args.depth)
    os.environ["SNAPSHOTS_PREFIX"] = str(server.root / "snapshot")
    n = args.connections
    with server:
        url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"

        async def measure() -> None:
            # One connection first, so that what the first join creates is not counted.
            warm = await open_idle(url, server.token, 1)
            await asyncio.sleep(1)
            before = await asyncio.to_thread(snapshot, server, 1)
            rss_before = rss_kb(server.pid)
            sockets = await open_idle(url, server.token, n)
            await asyncio.sleep(2)
            after = await asyncio.to_thread(snapshot, server, 2)
            rss_after = rss_kb(server.pid)
            stats = after.compare_to(before, "lineno")
            total = sum(s.size_diff for s in stats)
            print(
                f"idle memory: {n} joined connections to the {args.target} (presence off); "
                f"traced {total / n / 1024:.1f} KB/connection, RSS "
                f"{(rss_after - rss_before) / n:.1f} KB/connection (with tracemalloc on)"
            )
            print("  by file (KB/connection):")
            by_file = sorted(group(stats).items(), key=lambda kv: -kv[1])
            for name, size in by_file[:15]:
                print(f"    {size / n / 1024:6.2f}  {name}")
            print("  by line (bytes/connection):")
            for stat in sorted(stats, key=lambda s: -s.size_diff)[: args.top]:
                frame = stat.traceback[0]
                where = frame.filename.split("site-packages/")[-1].split("src/")[-1]
                print(
                    f"    {stat.size_diff / n:7.0f}  {stat.count_diff / n:5.1f} blocks  "
                    f"{where}:{frame.lineno}"
                )
            for ws in [*warm, *sockets]:
                if ws.transport is not None:
                    ws.transport.close()

        asyncio.run(measure())
    subprocess.run(["rm", "-rf", str(server.root)], check=False)


if __name__ == "__main__":
    main()
