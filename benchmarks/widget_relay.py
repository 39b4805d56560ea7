"""The widget's kernel relay beside the direct transport: latency into an idle kernel's
widget, and the highest rate the relay sustains into one widget.

    python benchmarks/widget_relay.py [--messages 1000] [--rate 50] [--ramp 100,200,...]

Starts a real Jupyter server with the extension (rate limit off) and a real IPython
kernel whose ``ChannelWidget(topic, transport="kernel")`` relays for a page. The page
is played at the kernel protocol (comm messages on the shell channel, relayed frames
read from IOPub), as the browser's anywidget does; the direct page is a WebSocket client
joined to the same topic. A publisher sends ``--messages`` messages at ``--rate`` msg/s,
each stamped with its send time: both pages' receive times give the latencies, in one
run. Then the relay alone: ``--step`` seconds at each rate of ``--ramp``; a rate is
sustained when every message arrives and the step's p99 latency stays under
``--lag-ms`` (the feed does not fall behind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server

import jupyter_channels as jc
from jupyter_channels.client.discovery import websocket_url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RelayPage:
    """A page of a kernel widget with the kernel transport, at the kernel protocol."""

    def __init__(self, server: Server, topic: str) -> None:
        from jupyter_client.manager import KernelManager

        env = {
            **os.environ,
            "JUPYTER_CHANNELS_URL": websocket_url(server.http_url),
            "JUPYTER_CHANNELS_TOKEN": server.token,
        }
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(60)
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.comm_id = self._execute(
            "from jupyter_channels import ChannelWidget\n"
            f"w = ChannelWidget({topic!r}, transport='kernel')\nprint(w.comm.comm_id)"
        )
        self._seq = 0
        self._post({"op": "open"})
        self._wait_for(lambda c: c.get("op") == "open")
        self._post({"op": "frames", "texts": [json.dumps(
            {"event": "join", "topic": topic, "ref": "1", "payload": {}}
        )]})  # fmt: skip
        self._wait_for(
            lambda c: (
                c.get("op") == "frames" and any(json.loads(t).get("ref") == "1" for t in c["texts"])
            )
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _execute(self, code: str) -> str:
        msg_id = self.kc.execute(code)
        out = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out).strip()

    def _post(self, content: dict[str, Any]) -> None:
        self._seq += 1
        relay = {"kind": "relay", "link": "bench", "seq": self._seq, **content}
        data = {"method": "custom", "content": relay}
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        )

    def _relayed(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        if msg["msg_type"] != "comm_msg" or msg["content"].get("comm_id") != self.comm_id:
            return None
        content = msg["content"]["data"].get("content")
        if not isinstance(content, dict) or content.get("kind") != "relay":
            return None
        return content

    def _wait_for(self, test: Any) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            content = self._relayed(self.kc.get_iopub_msg(timeout=30))
            if content is not None and test(content):
                return
        raise TimeoutError("the kernel did not answer the relay")

    def _read(self) -> None:
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            except Exception:  # the channels closed at the end
                return
            content = self._relayed(msg)
            if content is None or content.get("op") != "frames":
                continue
            now = time.time()
            for text in content["texts"]:
                frame = json.loads(text)
                if frame.get("event") == "message":
                    self.arrivals.put((now, frame))

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


class DirectPage:
    """A page with its own WebSocket: a client joined to the topic."""

    def __init__(self, server: Server, topic: str) -> None:
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.conn = jc.connect(url=server.http_url, token=server.token)
        room = self.conn.join(topic)
        room.on("*", lambda m: self.arrivals.put((time.time(), {"payload": m.payload})))

    def close(self) -> None:
        self.conn.close()


def publish(server: Server, topic: str, n: int, rate: float) -> float:
    """Send ``n`` messages at ``rate`` msg/s (acks not awaited); returns the seconds taken."""

    async def run() -> float:
        async with jc.aconnect(server.http_url, server.token) as conn:
            room = await conn.join(topic)
            tasks = []
            start = time.perf_counter()
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = {"t": time.time(), "i": i}
                tasks.append(asyncio.ensure_future(room.send("tick", payload)))
            await asyncio.gather(*tasks)
            return time.perf_counter() - start

    return asyncio.run(run())


def latencies(page: RelayPage | DirectPage, n: int, timeout: float) -> list[float]:
    """The latencies (ms) of ``n`` messages as they reach ``page``."""
    found: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(found) < n and time.monotonic() < deadline:
        try:
            at, frame = page.arrivals.get(timeout=0.5)
        except queue.Empty:
            continue
        payload = frame.get("payload") or {}
        if isinstance(payload, dict) and "t" in payload:
            found[payload["i"]] = (at - payload["t"]) * 1000
    return list(found.values())


def row(name: str, values: list[float], n: int) -> str:
    if not values:
        return f"  {name:7} received 0 of {n}"
    return (
        f"  {name:7} received {len(values)} of {n}  latency p50 ms {percentile(values, 0.5):.1f}"
        f"  p99 ms {percentile(values, 0.99):.1f}  max ms {max(values):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--ramp", default="100,200,500,1000,2000,4000")
    parser.add_argument("--step", type=float, default=5.0, help="seconds at each rate")
    parser.add_argument("--lag-ms", type=float, default=250.0)
    args = parser.parse_args()

    with Server(rate_limit=0) as server:
        relay = RelayPage(server, "bench:widget")
        direct = DirectPage(server, "bench:widget")
        try:
            seconds = publish(server, "bench:widget", args.messages, args.rate)
            timeout = 30 + seconds
            by_relay = latencies(relay, args.messages, timeout)
            by_direct = latencies(direct, args.messages, timeout)
            print(
                f"widget_relay: {args.messages} messages at {args.rate:g} msg/s into an idle "
                "kernel's widget"
            )
            print(row("kernel", by_relay, args.messages))
            print(row("direct", by_direct, args.messages))

            sustained = 0.0
            for rate in (float(r) for r in args.ramp.split(",")):
                n = max(1, round(rate * args.step))
                while not relay.arrivals.empty():
                    relay.arrivals.get()
                ok, p99, sent_rate = RelayStep(relay, server, "bench:widget", n, rate, args).run()
                print(
                    f"  ramp    {rate:,.0f} msg/s (published {sent_rate:,.0f}/s): "
                    + (f"p99 ms {p99:.1f}" if p99 is not None else "messages missing")
                    + ("" if ok else "  (lags)")
                )
                if not ok:
                    break
                sustained = rate
            print(f"  relay sustained into one widget: {sustained:,.0f} msg/s "
                  f"(every message, p99 < {args.lag_ms:g} ms)")  # fmt: skip
        finally:
            direct.close()
            relay.close()


class RelayStep:
    """One step of the ramp: ``n`` messages at ``rate`` into the relayed widget."""

    def __init__(
        self, relay: RelayPage, server: Server, topic: str, n: int, rate: float, args: Any
    ) -> None:
        self.relay, self.server, self.topic = relay, server, topic
        self.n, self.rate, self.args = n, rate, args

    def run(self) -> tuple[bool, float | None, float]:
        """Whether the relay kept up, the p99 latency (ms), the rate actually published."""
        seconds = publish(self.server, self.topic, self.n, self.rate)
        got = latencies(self.relay, self.n, 10 + seconds)
        sent_rate = self.n / seconds if seconds else float("nan")
        if len(got) < self.n:
            return False, None, sent_rate
        p99 = percentile(got, 0.99)
        return p99 < self.args.lag_ms, p99, sent_rate


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
