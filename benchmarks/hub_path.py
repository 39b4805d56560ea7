"""The channels service under JupyterHub, reached through the hub's
configurable-http-proxy and directly, side by side in one run.

    python benchmarks/hub_path.py [--runs 3] [--scenarios fanout,latency] [--quick]

Starts a real JupyterHub (``tests/hub_support.py``: the hub, its
configurable-http-proxy, the channels service as a hub-managed service) with
the service on ``fanout.py``'s settings (no rate limit, 256 MiB of queued
bytes), takes one API token of the hub user ``alice``, and runs ``fanout.py``'s
fanout and latency scenarios (``wsload.py`` processes on 127.0.0.1, the token in
an ``Authorization`` header) against the same service by two paths:

- proxy: ``ws://127.0.0.1:{hub port}/services/channels/api/channels/websocket``,
  as browsers and kernels reach it;
- direct: ``ws://127.0.0.1:{service port}/services/channels/...``, bypassing the
  proxy.

The paths swap order every repetition (proxy direct, direct proxy, ...), after
one small untimed run on each. Prints a Markdown table of medians: the ratio
proxy / direct, and for latencies the proxy's share, (proxy - direct) / proxy.
CPU is in cores (1.0 = one core saturated): the generator's over the timed part
(at 1.0 the figure is the generator's, not the server's), the service's and the
proxy's over the whole load process (connecting and joining included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.error
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The repository root, for tests.hub_support.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fanout import FULL, QUICK, TRAITS, invalid_runs, label, load, medians
from tests.hub_support import SpawnedHub, missing
from wsload import TOPIC

PATHS = ("proxy", "direct")
USER = "alice"


class BenchHub(SpawnedHub):
    """The tests' hub, its channels service on ``fanout.py``'s settings."""

    def config(self) -> str:
        hub_config = super().config()  # writes the service's config file
        with (self.root / "channels_config.py").open("a") as f:
            f.writelines(f"c.ChannelsApp.{k} = {v!r}\n" for k, v in TRAITS.items())
        return hub_config

    def where(self, path: str) -> str:
        if path == "proxy":
            return self.service_ws
        return self.service_direct.replace("http://", "ws://", 1) + "api/channels/websocket"

    def proxy_process(self) -> psutil.Process:
        for proc in self.descendants():
            if "configurable-http-proxy" in " ".join(proc.cmdline()):
                return proc
        raise LookupError("no configurable-http-proxy process under the hub")

    def settle(self, token: str, timeout: float = 60) -> None:
        """Wait until no connection of an earlier run is left in the topic."""
        path = f"api/channels/topics/{TOPIC}/presence"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = self.service_rest("GET", path, token=token, direct=True)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                return
            if not any(user["metas"] for user in state.values()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"connections of an earlier run are still in {TOPIC}")


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def run(hub: BenchHub, scenario: str, cfg: dict[str, Any], path: str, token: str) -> dict[str, Any]:
    hub.settle(token)
    servers = {"service_cpu": hub.service_process(), "proxy_cpu": hub.proxy_process()}
    before = {name: cpu_seconds(proc) for name, proc in servers.items()}
    start = time.perf_counter()
    result = load(scenario, {**cfg, "target": "project", "url": hub.where(path), "token": token})
    wall = time.perf_counter() - start
    for name, proc in servers.items():
        result[name] = (cpu_seconds(proc) - before[name]) / wall
    return result


#: The latency figures the proxy's share is given for.
SHARED = ("p50_ms", "p99_ms")


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def report(results: dict[str, dict[str, list[dict[str, Any]]]], runs: int) -> None:
    print(f"hub_path: medians of {runs} runs; ratio = proxy / direct;", end=" ")
    print("the proxy's share = (proxy - direct) / proxy")
    print()
    print("| scenario | figure | proxy | direct | ratio | proxy's share |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    saturated = []
    for name, by_path in results.items():
        for i, (figure, values) in enumerate(medians(by_path).items()):
            proxy, direct = values["proxy"], values["direct"]
            ratio = f"{proxy / direct:.2f}" if direct and not figure.endswith("_cpu") else ""
            share = f"{(proxy - direct) / proxy:.0%}" if figure in SHARED and proxy else ""
            scenario = name if i == 0 else ""
            cells = [scenario, figure, number(proxy), number(direct), ratio, share]
            print("| " + " | ".join(cells) + " |")
            if figure == "generator_cpu" and max(proxy, direct) >= 0.9:
                saturated.append(name)
        invalid = invalid_runs(by_path)
        if invalid:
            print(f"\n{name}: INVALID runs: {', '.join(invalid)}")
    for name in saturated:
        print(f"\n{name}: the generator used a whole core: the figure is the generator's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="fanout,latency")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    why = missing()
    if why:
        sys.exit(f"hub_path.py needs a JupyterHub: {why}")
    chosen = [s for s in ("fanout", "latency") if s in args.scenarios.split(",")]
    sizes = QUICK if args.quick else FULL
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    root = Path(tempfile.mkdtemp(prefix="channels-hub-bench-"))
    hub = BenchHub(root)
    try:
        hub.start()
        token = hub.token_for(USER)
        for path in PATHS:  # untimed: the token's lookup, the topic, the proxy's route
            run(hub, "fanout", QUICK["fanout"][0], path, token)
        for scenario in chosen:
            cfg = sizes[scenario][0]  # S=100 (fanout.py's first size)
            for repetition in range(args.runs):
                for path in PATHS if repetition % 2 == 0 else PATHS[::-1]:
                    results[label(scenario, cfg)][path].append(run(hub, scenario, cfg, path, token))
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    report(results, args.runs)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - started:.0f} s)")
