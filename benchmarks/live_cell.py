"""What a live shared cell (``%%share --live``) costs each follower, and its sender.

    python benchmarks/live_cell.py [--seconds 10] [--followers 3]

Starts a real Jupyter server with the extension and a real IPython kernel pointed
at it. Followers are raw WebSocket clients that join the cell's topic and count
every ``cell`` frame they receive and its bytes on the wire. The kernel runs
live cells of ``--seconds`` that change 100 times a second (so the sender's
throttle, 10 updates a second, sets the pace):

- ``progress``: a progress line redrawn with ``clear_output(wait=True)`` (the
  state stays one short line);
- ``log``: a line of ~40 bytes printed each 0.01 s (the state grows: each update
  carries every line so far).

For each it prints, per follower: the updates received per second, the bytes per
second while the cell ran, the mean and largest frame. Then the sender's side: a
tight loop of ``--prints`` prints, run plain and with ``%%share --live``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Any

from jupyter_client.manager import KernelManager
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server

PROGRESS = """\
%%share --live {topic}
import time
from IPython.display import clear_output
start = time.monotonic()
i = 0
while time.monotonic() - start < {seconds}:
    clear_output(wait=True)
    print(f"step {{i}}: {{100 * (time.monotonic() - start) / {seconds}:.1f}}% done")
    i += 1
    time.sleep(0.01)
"""

LOG = """\
%%share --live {topic}
import time
start = time.monotonic()
i = 0
while time.monotonic() - start < {seconds}:
    print(f"{{time.monotonic() - start:8.3f}} s: line {{i:6d}} of the log")
    i += 1
    time.sleep(0.01)
"""

TIGHT = """\
{magic}import time
start = time.perf_counter()
for i in range({prints}):
    print("line", i)
elapsed = time.perf_counter() - start
"""


class Follower:
    """A raw WebSocket client on the topic: every ``cell`` frame's arrival and size."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, int, str]] = []  # (time, bytes, status)

    async def run(self, url: str, token: str, topic: str, ready: asyncio.Event) -> None:
        request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
        ws = await websocket_connect(request, max_message_size=16 * 2**20)
        ws.write_message(json.dumps({"event": "join", "topic": topic, "ref": "1"}))
        joined = False
        while True:
            text = await ws.read_message()
            if text is None:
                return
            assert isinstance(text, str)
            frame = json.loads(text)
            if frame.get("event") == "reply" and frame.get("ref") == "1":
                joined = True
                ready.set()
            if joined and frame.get("event") == "message" and frame.get("subject") == "cell":
                status = frame["payload"].get("status", "")
                self.frames.append((time.monotonic(), len(text.encode()), status))
                if status in ("ok", "error"):
                    ws.close()
                    return


class Loop:
    """An asyncio loop on a thread, for the followers while the kernel runs its cell."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def execute(kc: Any, code: str, timeout: float = 600) -> dict[str, Any]:
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    content: dict[str, Any] = reply["content"]
    if content["status"] != "ok":
        raise RuntimeError(f"the cell failed: {content}")
    return content


def user_value(kc: Any, name: str) -> float:
    reply = kc.execute_interactive(
        "", user_expressions={"v": name}, output_hook=lambda msg: None, timeout=60
    )
    return float(reply["content"]["user_expressions"]["v"]["data"]["text/plain"])


def follow(
    loop: Loop, server: Server, kc: Any, code: str, topic: str, followers: int
) -> list[Follower]:
    url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
    crowd = [Follower() for _ in range(followers)]
    tasks: list[asyncio.Future[None]] = []

    async def start() -> None:
        readies = [asyncio.Event() for _ in crowd]
        tasks.extend(
            asyncio.ensure_future(follower.run(url, server.token, topic, ready))
            for follower, ready in zip(crowd, readies, strict=True)
        )
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)

    async def finish() -> None:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    loop.run(start())
    execute(kc, code)
    loop.run(finish())
    return crowd


def report(case: str, crowd: list[Follower]) -> None:
    rates, throughputs, means, largest = [], [], [], []
    for follower in crowd:
        running = [f for f in follower.frames if f[2] == "running"]
        span = follower.frames[-1][0] - follower.frames[0][0]
        rates.append((len(running) - 1) / (running[-1][0] - running[0][0]))
        throughputs.append(sum(size for _, size, _ in follower.frames) / span)
        means.append(statistics.mean(size for _, size, _ in follower.frames))
        largest.append(max(size for _, size, _ in follower.frames))
    frames = len(crowd[0].frames)
    print(
        f"  {case:<9} {frames:5d} frames  {statistics.median(rates):5.1f} updates/s"
        f"  {statistics.median(throughputs) / 1024:8.1f} KiB/s per follower"
        f"  mean frame {statistics.median(means) / 1024:6.1f} KiB"
        f"  largest {statistics.median(largest) / 1024:6.1f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--followers", type=int, default=3)
    parser.add_argument("--prints", type=int, default=20_000)
    args = parser.parse_args()

    loop = Loop()
    with Server() as server:
        km = KernelManager(kernel_name="python3")
        env = {**os.environ, "JUPYTER_CHANNELS_TOKEN": server.token}
        env["JUPYTER_CHANNELS_URL"] = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
        km.start_kernel(env=env)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            execute(kc, "%load_ext jupyter_channels")
            print(
                f"live_cell: cells of {args.seconds:g} s changing 100 times a second,"
                f" {args.followers} followers (medians over followers)"
            )
            for case, template in (("progress", PROGRESS), ("log", LOG)):
                topic = f"bench:live-{case}"
                code = template.format(topic=topic, seconds=args.seconds)
                report(case, follow(loop, server, kc, code, topic, args.followers))
            timings = {}
            for case, magic in (("plain", ""), ("live", "%%share --live bench:tight\n")):
                execute(kc, TIGHT.format(magic=magic, prints=args.prints))
                timings[case] = user_value(kc, "elapsed")
            print(
                f"  sender: {args.prints} prints in a tight loop take"
                f" {timings['plain']:.3f} s plain, {timings['live']:.3f} s live"
                f" ({timings['live'] / timings['plain']:.2f}x)"
            )
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
