"""What one big history read costs the server: memory, and the publishing it holds up.

    python benchmarks/history_reads.py [--messages 1000] [--size 921600] [--posts 5]
        [--broker local|redis] [--max-queued-bytes N]

Starts a real Jupyter server with the extension on a fresh SQLite history, or
on a fresh ``redis-server`` with ``--broker redis`` (rate limit off,
``history_size`` = ``--messages``), stores ``--messages``
messages of ``--size`` bytes of payload in one topic (REST POSTs, a few at a
time), then measures, each on its own:

- rest: one ``GET api/channels/topics/T/messages?since=0``: the reply's size
  and message count, the server's RSS before and its peak during the read
  (``VmHWM``, reset first through ``/proc/PID/clear_refs``, and a sampling
  thread as a check), and the latency of small POSTs to another topic sent one
  after another while the read runs (only those answered before the read
  ended count as "during");
- pages: the same, reading every page forward (``since`` = the last offset
  received) until the reply's messages reach its ``offset``;
- ws: a WebSocket join with ``since: 0``: its reply (or how the connection
  ended) and the server's peak RSS.

No figure is checked here; ``docs/performance.md`` records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server
from cross_server import Redis

BIG, SMALL = "bench:big", "bench:small"
MB = 1024 * 1024
_MESSAGE_OFFSET = re.compile(rb'"offset":(\d+),"ts":')


class Memory:
    """The server's resident memory: now, and its peak since the last ``reset``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def field(self, name: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(name)

    def rss(self) -> int:
        return self.field("VmRSS")

    def reset(self) -> None:
        """Start a new peak: the kernel's high-water mark (if resettable) and the sampler's."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
                clear.write("5")
        except OSError:
            pass  # VmHWM then keeps the peak since start; the sampled peak still holds
        self.sampled = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def peak(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self.sampled, self.field("VmHWM"))

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.sampled = max(self.sampled, self.rss())
            except (OSError, KeyError):
                return  # the server is gone


def request(server: Server, method: str, path: str, body: Any = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        server.http_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as response:
        return bytes(response.read())


def fill(server: Server, messages: int, size: int) -> float:
    body = {"subject": "text", "payload": {"text": "x" * size}}
    path = f"api/channels/topics/{BIG}/messages"
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: request(server, "POST", path, body), range(messages)))
    return time.perf_counter() - started


def summary(reply: bytes) -> dict[str, Any]:
    """Count and last offset of the messages in a reply, without decoding 900 MB of JSON
    (payloads are all ``x``, so the pattern only matches message frames)."""
    offsets = [int(o) for o in _MESSAGE_OFFSET.findall(reply)]
    start = reply.find(b'"messages":[')
    if start < 0:
        return {"count": 0, "last": None, "reply": reply.decode()[:200]}
    end = reply.index(b"]", start)  # frames of ``x`` payloads hold no brackets
    rest = json.loads(reply[:start] + b'"messages":[]' + reply[end + 1 :])
    if rest.get("event") == "reply":
        rest = rest["payload"]["response"]
    del rest["messages"]
    return {"count": len(offsets), "last": offsets[-1] if offsets else None, **rest}


def posts_during(server: Server, running: threading.Event, most: int) -> list[tuple[float, int]]:
    """Small POSTs to another topic, one after another, while ``running`` is set:
    each one's latency and HTTP status."""
    answers = []
    path = f"api/channels/topics/{SMALL}/messages"
    while running.is_set() and len(answers) < most:
        started = time.perf_counter()
        try:
            request(server, "POST", path, {"subject": "text", "payload": {"text": "hi"}})
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        if running.is_set():
            answers.append((time.perf_counter() - started, status))
    return answers


def while_reading(server: Server, memory: Memory, read: Any, posts: int) -> dict[str, Any]:
    before = memory.rss()
    running = threading.Event()
    running.set()
    memory.reset()
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        reading = pool.submit(read)
        time.sleep(0.05)  # let the read reach the server first
        posting = pool.submit(posts_during, server, running, posts)
        result = reading.result()
        seconds = time.perf_counter() - started
        running.clear()
        latencies = posting.result()
    return {
        "rss_before": before,
        "rss_peak": memory.peak(),
        "read_s": seconds,
        "posts": latencies,
        **result,
    }


def rest_read(server: Server) -> dict[str, Any]:
    reply = request(server, "GET", f"api/channels/topics/{BIG}/messages?since=0")
    return {"reply_bytes": len(reply), **summary(reply)}


def paged_read(server: Server) -> dict[str, Any]:
    since, pages, biggest, count = 0, 0, 0, 0
    while True:
        reply = request(server, "GET", f"api/channels/topics/{BIG}/messages?since={since}")
        page = summary(reply)
        pages += 1
        biggest = max(biggest, len(reply))
        count += page["count"]
        if page["last"] is None or page["last"] >= page["offset"]:
            return {"reply_bytes": biggest, "pages": pages, "count": count}
        since = page["last"]


def ws_join(server: Server) -> dict[str, Any]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def join() -> dict[str, Any]:
        url = f"ws://127.0.0.1:{server.port}/api/channels/websocket"
        req = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        conn = await websocket_connect(req, max_message_size=4 * 1024 * MB)
        frame = {"event": "join", "topic": BIG, "ref": 1, "since": 0, "payload": {}}
        await conn.write_message(json.dumps(frame))
        while True:
            text = await conn.read_message()
            if text is None:
                return {"closed": f"{conn.close_code} {conn.close_reason}"}
            if isinstance(text, str) and text.startswith('{"event":"reply"'):
                reply = text.encode()
                conn.close()
                return {"reply_bytes": len(reply), **summary(reply)}

    return asyncio.run(join())


def report(name: str, result: dict[str, Any]) -> None:
    posts = result["posts"]
    figures = [
        f"RSS {result['rss_before'] / MB:,.0f} -> peak {result['rss_peak'] / MB:,.0f} MB",
        f"read {result['read_s']:.2f} s",
    ]
    if "reply_bytes" in result:
        growth = (result["rss_peak"] - result["rss_before"]) / max(result["reply_bytes"], 1)
        figures.insert(0, f"reply {result['reply_bytes'] / MB:,.1f} MB")
        figures.append(f"peak growth / reply {growth:.2f}")
    if "count" in result:
        figures.insert(0, f"{result['count']} messages")
    if "pages" in result:
        figures.insert(0, f"{result['pages']} pages")
    for key in ("recovered", "truncated", "closed"):
        if key in result:
            figures.append(f"{key} {result[key]}")
    if posts:
        latencies = [seconds for seconds, _ in posts]
        failed = [status for _, status in posts if status != 200]
        figures.append(
            f"POST during read: median {statistics.median(latencies) * 1000:.0f} ms,"
            f" max {max(latencies) * 1000:.0f} ms ({len(posts)} answered during it"
            + (f", failed: {failed})" if failed else ")")
        )
    else:
        figures.append("POST during read: none answered before the read ended")
    print(f"{name:6} " + "; ".join(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=900 * 1024, help="payload bytes")
    parser.add_argument("--posts", type=int, default=5, help="POSTs timed during a read")
    parser.add_argument("--reads", default="rest,pages,ws")
    parser.add_argument("--broker", choices=["local", "redis"], default="local")
    parser.add_argument(
        "--max-queued-bytes", type=int, help="the trait; a page holds a quarter of it at most"
    )
    args = parser.parse_args()
    traits: dict[str, object] = {
        "rate_limit": 0,
        "history_size": args.messages,
        # Room for the payload and the frame around it.
        "max_message_size": max(1024 * 1024, args.size + 4096),
    }
    if args.max_queued_bytes is not None:
        traits["max_queued_bytes"] = args.max_queued_bytes
    print(
        f"history_reads: {args.messages} messages of {args.size:,} B in one topic"
        + (", redis broker" if args.broker == "redis" else ""),
        flush=True,
    )
    with ExitStack() as stack:
        if args.broker == "redis":
            redis = Redis()
            stack.callback(redis.close)
            traits["broker_url"] = redis.url
        server = stack.enter_context(Server(**traits))
        memory = Memory(server.pid)
        print(f"fill   {fill(server, args.messages, args.size):.1f} s", flush=True)
        reads = {"rest": rest_read, "pages": paged_read, "ws": ws_join}
        for name in args.reads.split(","):
            report(name, while_reading(server, memory, lambda r=reads[name]: r(server), args.posts))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
