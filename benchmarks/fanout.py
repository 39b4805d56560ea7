"""jupyter-channels against a bare Tornado forwarder, side by side in one run.

    python benchmarks/fanout.py [--runs 3] [--scenarios fanout,latency,idle,kernel] [--quick]

Starts (a) a real Jupyter server with the extension on its embedded default
(SQLite history on; rate and queue limits raised for the benchmark) and (b)
``baseline_server.py``, a bare Tornado server forwarding each text frame to
every other connection with a plain ``write_message`` loop. Each scenario runs
against both, alternating A B A B A B; load comes from ``wsload.py``
processes on 127.0.0.1. Prints medians and project/baseline ratios, and the
generator's CPU (1.0 = one core saturated: the figure is then the
generator's, not the server's).

- fanout: S subscribers on one topic, one publisher sends M messages of ~200 B
  keeping at most 64 unacknowledged; deliveries/s = S x M / wall time. A run
  where any subscriber misses, doubles or reorders a message is invalid.
- latency: 100 subscribers, a publisher paced at 100 msg/s; send-to-receive
  p50 / p99 / max.
- idle: N idle joined connections; server RSS per connection; then one
  broadcast must reach all of them.
- kernel: ``kernel_rate.py`` (the Python client; the baseline has no client).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(__file__))
from _server import Server, free_port

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = {
    "fanout": [{"subscribers": 100, "messages": 2000}, {"subscribers": 1000, "messages": 300}],
    "latency": [{"subscribers": 100, "rate": 100, "seconds": 20}],
    "idle": [{"subscribers": 2000}, {"subscribers": 10000}],
}
QUICK = {
    "fanout": [{"subscribers": 5, "messages": 20}],
    "latency": [{"subscribers": 5, "rate": 50, "seconds": 0.4}],
    "idle": [{"subscribers": 20}],
}


class Baseline:
    def __enter__(self) -> Baseline:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "baseline_server.py"), str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    @property
    def pid(self) -> int:
        return self.proc.pid


def load(scenario: str, cfg: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "wsload.py"), scenario, json.dumps(cfg)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.splitlines()[-1]))


def idle(cfg: dict[str, Any], pid: int) -> dict[str, Any]:
    server = psutil.Process(pid)
    before = server.memory_info().rss
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "wsload.py"), "idle", json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    opened = json.loads(proc.stdout.readline())["opened"]
    time.sleep(1.0)
    after = server.memory_info().rss
    proc.stdin.write("\n")
    proc.stdin.flush()
    result = json.loads(proc.stdout.readline())
    proc.wait(120)
    return {
        "KB/connection": (after - before) / 1024 / opened,
        "reached": result["reached"],
        "broadcast_s": result["broadcast_s"],
        "valid": result["reached"] == cfg["subscribers"],
    }


def run(scenario: str, cfg: dict[str, Any], target: str, url: str, token: str, pid: int) -> Any:
    full = {**cfg, "target": target, "url": url, "token": token}
    return idle(full, pid) if scenario == "idle" else load(scenario, full)


def targets(project: Server, baseline: Baseline) -> dict[str, tuple[str, str, int]]:
    """The WebSocket URL, token and server pid of each side."""
    return {
        "project": (
            f"ws://127.0.0.1:{project.port}/api/channels/websocket",
            project.token,
            project.pid,
        ),
        "baseline": (f"ws://127.0.0.1:{baseline.port}/", "", baseline.pid),
    }


def label(scenario: str, cfg: dict[str, Any]) -> str:
    if scenario == "fanout":
        return f"fanout S={cfg['subscribers']} M={cfg['messages']}"
    if scenario == "latency":
        return f"latency S={cfg['subscribers']} {cfg['rate']}/s"
    return f"idle N={cfg['subscribers']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="fanout,latency,idle,kernel")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    chosen = args.scenarios.split(",")
    sizes = QUICK if args.quick else FULL
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    traits = {
        "rate_limit": 0,
        "max_queued_bytes": 256 * 1024 * 1024,
        "max_topics_per_connection": 10,
    }
    with Server(**traits) as project, Baseline() as baseline:
        for scenario in (s for s in ("fanout", "latency") if s in chosen):
            for cfg in sizes[scenario]:
                for _ in range(args.runs):
                    for target, where in targets(project, baseline).items():  # A B A B A B
                        results[label(scenario, cfg)][target].append(
                            run(scenario, cfg, target, *where)
                        )
    if "idle" in chosen:
        # Fresh servers for each idle run: memory a server once took is not given back,
        # so a second run on the same server would measure nothing.
        for cfg in sizes["idle"]:
            for _ in range(args.runs):
                for target in ("project", "baseline"):
                    with Server(**traits) as project, Baseline() as baseline:
                        where = targets(project, baseline)[target]
                        results[label("idle", cfg)][target].append(run("idle", cfg, target, *where))
    report(results, args.runs)
    if "kernel" in chosen:
        messages = "200" if args.quick else "5000"
        subprocess.run(
            [sys.executable, os.path.join(HERE, "kernel_rate.py"), "--messages", messages,
             "--runs", str(args.runs)],
            check=True,
        )  # fmt: skip


def report(results: dict[str, dict[str, list[dict[str, Any]]]], runs: int) -> None:
    print(f"medians of {runs} runs; ratio = project / baseline")
    print(f"{'scenario':28} {'figure':16} {'project':>12} {'baseline':>12} {'ratio':>7}")
    for name, by_target in results.items():
        invalid = [t for t, rs in by_target.items() for r in rs if not r.get("valid", True)]
        for figure in by_target["project"][0]:
            if figure == "valid":
                continue
            values = {
                t: statistics.median(float(r[figure]) for r in rs) for t, rs in by_target.items()
            }
            ratio = values["project"] / values["baseline"] if values["baseline"] else float("nan")
            print(
                f"{name:28} {figure:16} {values['project']:12,.2f} {values['baseline']:12,.2f}"
                f" {ratio:7.2f}"
            )
        if invalid:
            print(f"{name:28} INVALID runs: {', '.join(invalid)}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
