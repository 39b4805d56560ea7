"""jupyter-channels, as the extension and as the service, against a bare Tornado
forwarder, side by side in one run.

    python benchmarks/fanout.py [--runs 3] [--scenarios fanout,latency,idle,kernel] [--quick]
    python benchmarks/fanout.py --scenarios phoenix

Starts (a) a real Jupyter server with the extension on its embedded default
(SQLite history on; rate, queue and per-user connection limits raised for the
benchmark), (b) ``jupyter channels serve`` with the same settings and a tokens
file of one token, and (c) ``baseline_server.py``, a bare Tornado server
forwarding each text frame to every other connection with a plain
``write_message`` loop. Each scenario runs against all three in turn, A B C A B
C A B C; load comes from ``wsload.py`` processes on 127.0.0.1, which send the
token in an ``Authorization`` header. Prints medians and the ratios
extension/baseline, service/baseline and service/extension, and the generator's
CPU (1.0 = one core saturated: the figure is then the generator's, not the
server's).

- fanout: S subscribers on one topic, one publisher sends M messages of ~200 B
  keeping at most 64 unacknowledged; deliveries/s = S x M / wall time. A run
  where any subscriber misses, doubles or reorders a message is invalid.
- latency: 100 subscribers, a publisher paced at 100 msg/s; send-to-receive
  p50 / p99 / max.
- idle: N idle joined connections; server RSS per connection; then one
  broadcast must reach all of them.
- kernel: ``kernel_rate.py`` (the Python client; the baseline has no client).
- phoenix (not run by default): the fanout scenario with native subscribers and with
  Phoenix V2 subscribers (``?vsn=2.0.0``), side by side on the extension and the
  service; the ratio phoenix/native.

Then the regression check: every fanout row's deliveries/s must be at least
``--min-fanout-ratio`` (3) times the baseline's and every latency row's p99 at most
``--max-p99-ratio`` (1.5) times the baseline's, for the extension and the service,
and no run may be invalid; otherwise the script exits with status 1.
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
from _server import Server, Service, free_port

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = {
    "fanout": [{"subscribers": 100, "messages": 2000}, {"subscribers": 1000, "messages": 300}],
    "latency": [{"subscribers": 100, "rate": 100, "seconds": 20}],
    "idle": [{"subscribers": 2000}, {"subscribers": 10000}],
    "phoenix": [{"subscribers": 100, "messages": 2000}],
}
QUICK = {
    "fanout": [{"subscribers": 5, "messages": 20}],
    "latency": [{"subscribers": 5, "rate": 50, "seconds": 0.4}],
    "idle": [{"subscribers": 20}],
    "phoenix": [{"subscribers": 5, "messages": 20}],
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


#: The settings of every server under test: no rate limit, room for queued frames.
TRAITS: dict[str, Any] = {
    "rate_limit": 0,
    "max_queued_bytes": 256 * 1024 * 1024,
    "max_topics_per_connection": 10,
    # Every load connection is one user (one token): the per-user cap would refuse
    # all but the first 200 of the fanout and idle subscribers.
    "max_connections_per_user": 100_000,
    # The load generator joins thousands of subscribers at once and does not come back
    # after retry_after (as the bundled clients do): no join admission.
    "join_rate": 0,
}

#: The targets, in the order they take turns; every one but the baseline speaks the
#: channels protocol (``wsload.py``'s ``project`` target).
TARGETS = ("extension", "service", "baseline")


def run(scenario: str, cfg: dict[str, Any], target: str, url: str, token: str, pid: int) -> Any:
    protocol = "baseline" if target == "baseline" else "project"
    full = {**cfg, "target": protocol, "url": url, "token": token}
    return idle(full, pid) if scenario == "idle" else load(scenario, full)


class Targets:
    """The servers of ``only`` (default all three), started together:
    ``with Targets(traits) as t: t.where("service")``."""

    def __init__(self, traits: dict[str, Any], only: tuple[str, ...] = TARGETS) -> None:
        self.extension = Server(**traits)
        self.service = Service(**traits)
        self.baseline = Baseline()
        self.started = [getattr(self, target) for target in only]

    def __enter__(self) -> Targets:
        for server in self.started:
            server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.started:
            if getattr(server, "proc", None) is not None:
                server.__exit__()

    def where(self, target: str) -> tuple[str, str, int]:
        """The WebSocket URL, token and server pid of ``target``."""
        if target == "baseline":
            return (f"ws://127.0.0.1:{self.baseline.port}/", "", self.baseline.pid)
        server = self.extension if target == "extension" else self.service
        return (f"ws://127.0.0.1:{server.port}/api/channels/websocket", server.token, server.pid)


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
    parser.add_argument("--min-fanout-ratio", type=float, default=3.0)
    parser.add_argument("--max-p99-ratio", type=float, default=1.5)
    args = parser.parse_args()
    chosen = args.scenarios.split(",")
    sizes = QUICK if args.quick else FULL
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    with Targets(TRAITS) as servers:
        for scenario in (s for s in ("fanout", "latency") if s in chosen):
            for cfg in sizes[scenario]:
                for _ in range(args.runs):
                    for target in TARGETS:  # A B C A B C A B C
                        results[label(scenario, cfg)][target].append(
                            run(scenario, cfg, target, *servers.where(target))
                        )
    if "idle" in chosen:
        # Fresh servers for each idle run: memory a server once took is not given back,
        # so a second run on the same server would measure nothing.
        for cfg in sizes["idle"]:
            for _ in range(args.runs):
                for target in TARGETS:
                    with Targets(TRAITS, only=(target,)) as servers:
                        where = servers.where(target)
                        results[label("idle", cfg)][target].append(run("idle", cfg, target, *where))
    if results:
        report(results, args.runs)
    if "phoenix" in chosen:
        phoenix(sizes["phoenix"], args.runs)
    if "kernel" in chosen:
        messages = "200" if args.quick else "5000"
        subprocess.run(
            [sys.executable, os.path.join(HERE, "kernel_rate.py"), "--messages", messages,
             "--runs", str(args.runs)],
            check=True,
        )  # fmt: skip
    if not check(results, args.min_fanout_ratio, args.max_p99_ratio):
        sys.exit(1)


#: The figures the check holds to the baseline's: (row prefix, figure, bound).
CHECKED = (("fanout", "deliveries/s", "min"), ("latency", "p99_ms", "max"))


def check(
    results: dict[str, dict[str, list[dict[str, Any]]]], min_fanout: float, max_p99: float
) -> bool:
    """Print one line per checked ratio; ``False`` if any is out of bounds or a run invalid."""
    passed = True
    for name, by_target in results.items():
        if invalid_runs(by_target):
            print(f"check {name}: FAILED (invalid runs)")
            passed = False
        values = medians(by_target)
        for prefix, figure, bound in CHECKED:
            if not name.startswith(prefix):
                continue
            limit = min_fanout if bound == "min" else max_p99
            for target in ("extension", "service"):
                base = values[figure]["baseline"]
                ratio = values[figure][target] / base if base else float("inf")
                ok = ratio >= limit if bound == "min" else ratio <= limit
                sign = ">=" if bound == "min" else "<="
                print(
                    f"check {name} {figure} {target}/baseline {ratio:.2f} {sign} {limit:g}: "
                    + ("ok" if ok else "FAILED")
                )
                passed = passed and ok
    return passed


SERIALIZERS = ("native", "phoenix")


def phoenix(sizes: list[dict[str, Any]], runs: int) -> None:
    """Fan-out to native subscribers and to Phoenix V2 subscribers, taking turns."""
    targets = ("extension", "service")
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    with Targets(TRAITS, only=targets) as servers:
        for cfg in sizes:
            for _ in range(runs):
                for target in targets:
                    for serializer in SERIALIZERS:
                        full = {**cfg, "phoenix": serializer == "phoenix"}
                        results[f"{label('fanout', cfg)} {target}"][serializer].append(
                            run("fanout", full, target, *servers.where(target))
                        )
    print(f"medians of {runs} runs; subscribers native or Phoenix V2 (?vsn=2.0.0)")
    print(f"{'scenario':36} {'figure':16} {'native':>12} {'phoenix':>12} {'phx/nat':>8}")
    for name, by_serializer in results.items():
        invalid = invalid_runs(by_serializer)
        for figure, values in medians(by_serializer).items():
            native, v2 = values["native"], values["phoenix"]
            ratio = v2 / native if native else float("nan")
            print(f"{name:36} {figure:16} {native:12,.2f} {v2:12,.2f} {ratio:8.2f}")
        if invalid:
            print(f"{name:36} INVALID runs: {', '.join(invalid)}")


#: The ratios printed, numerator / denominator, and their short names.
RATIOS = (("extension", "baseline"), ("service", "baseline"), ("service", "extension"))
SHORT = {"extension": "ext", "service": "svc", "baseline": "base"}


def medians(by_target: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Figure -> target -> the median of its runs (every figure but ``valid``)."""
    figures = [f for f in next(iter(by_target.values()))[0] if f != "valid"]
    return {
        figure: {t: statistics.median(float(r[figure]) for r in rs) for t, rs in by_target.items()}
        for figure in figures
    }


def invalid_runs(by_target: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The target of every run that missed, doubled or reordered a message."""
    return [t for t, rs in by_target.items() for r in rs if not r.get("valid", True)]


def report(results: dict[str, dict[str, list[dict[str, Any]]]], runs: int) -> None:
    ratios = ", ".join(f"{SHORT[a]}/{SHORT[b]} = {a} / {b}" for a, b in RATIOS)
    print(f"medians of {runs} runs; {ratios}")
    print(
        f"{'scenario':28} {'figure':16}"
        + "".join(f" {t:>12}" for t in TARGETS)
        + "".join(f" {SHORT[a] + '/' + SHORT[b]:>8}" for a, b in RATIOS)
    )
    for name, by_target in results.items():
        invalid = invalid_runs(by_target)
        for figure, values in medians(by_target).items():
            print(
                f"{name:28} {figure:16}"
                + "".join(f" {values[t]:12,.2f}" for t in TARGETS)
                + "".join(
                    f" {values[a] / values[b] if values[b] else float('nan'):8.2f}"
                    for a, b in RATIOS
                )
            )
        if invalid:
            print(f"{name:28} INVALID runs: {', '.join(invalid)}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
