"""The benchmark scripts run end to end with tiny sizes, so they never rot (no timings checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run_benchmark(
    script: str, *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script> args...`` run to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=timeout, check=check,
    )  # fmt: skip


def test_the_kernel_rate_benchmark_runs_and_reports_both_publishers():
    result = run_benchmark("kernel_rate.py", "--messages", "40", "--runs", "1")
    lines = result.stdout.splitlines()
    assert lines[0] == "kernel: 40 messages of ~200 B, medians of 1 runs"
    for mode in ("blocking", "pipelined"):
        (row,) = [line for line in lines if line.strip().startswith(mode)]
        assert "published/s" in row
        assert "received/s" in row


def test_the_cross_server_benchmark_runs_and_reports_its_figures():
    from .redis_support import redis_server_binary

    redis_server_binary()  # skipped without redis-server, failed in CI
    result = run_benchmark(
        "cross_server.py", "--servers", "2", "--subscribers", "3", "--messages", "20", "--runs", "1"
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cross_server: redis broker, 2 server(s), 3 subscribers")
    for figure in ("published/s", "deliveries/s", "latency p50 ms", "latency p99 ms"):
        assert figure in lines[1]


def test_the_fanout_benchmark_runs_every_scenario_on_the_extension_the_service_and_a_baseline():
    # Tiny sizes say nothing of the ratios: a bound no run can meet fails the fan-out
    # check (the exit status), one every run meets passes the latency check.
    result = run_benchmark(
        "fanout.py",
        "--quick",
        "--runs",
        "1",
        "--min-fanout-ratio",
        "1000000",
        "--max-p99-ratio",
        "1000000",
        check=False,
    )
    out = result.stdout
    assert result.returncode == 1, result.stderr[-2000:]
    checks = [line for line in out.splitlines() if line.startswith("check ")]
    assert checks == [
        "check fanout S=5 M=20 deliveries/s extension/baseline "
        + checks[0].split("baseline ")[1].split()[0]
        + " >= 1e+06: FAILED",
        "check fanout S=5 M=20 deliveries/s service/baseline "
        + checks[1].split("baseline ")[1].split()[0]
        + " >= 1e+06: FAILED",
        "check latency S=5 50/s p99_ms extension/baseline "
        + checks[2].split("baseline ")[1].split()[0]
        + " <= 1e+06: ok",
        "check latency S=5 50/s p99_ms service/baseline "
        + checks[3].split("baseline ")[1].split()[0]
        + " <= 1e+06: ok",
    ], out
    assert "svc/ext = service / extension" in out
    header = next(line for line in out.splitlines() if line.startswith("scenario"))
    assert header.split()[2:5] == ["extension", "service", "baseline"]
    for row in ("fanout S=5 M=20", "latency S=5 50/s", "idle N=20"):
        assert row in out, out
    assert "INVALID" not in out
    assert "published/s" in out  # the kernel scenario ran too


def test_the_join_payloads_benchmark_runs_and_reports_both_scenarios():
    import json

    result = run_benchmark(
        "join_payloads.py",
        "--connections",
        "1",
        "--topics",
        "2",
        "--payload",
        "100000",
        "--per-user",
        "3",
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["payloads"]["joins_refused"] == 2  # over the 64 KiB default
    assert figures["per_user"]["connections_open"] == 3


def test_the_history_reads_benchmark_runs_and_reports_every_read():
    result = run_benchmark("history_reads.py", "--messages", "30", "--size", "2000", "--posts", "2")
    lines = result.stdout.splitlines()
    assert lines[0] == "history_reads: 30 messages of 2,000 B in one topic"
    rows = {line.split()[0]: line for line in lines[1:]}
    for read in ("rest", "pages", "ws"):
        assert "30 messages" in rows[read], rows
        assert "peak growth / reply" in rows[read]
        assert "POST during read" in rows[read]


def test_the_hub_path_benchmark_runs_both_scenarios_through_the_proxy_and_direct():
    from .hub_support import require

    require()
    result = run_benchmark("hub_path.py", "--quick", "--runs", "1")
    out = result.stdout
    lines = out.splitlines()
    assert "| scenario | figure | proxy | direct | ratio | proxy's share |" in lines, out
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ")]
    figures = [row[1].strip() for row in rows[2:]]
    for figure in ("deliveries/s", "p50_ms", "p99_ms", "generator_cpu", "proxy_cpu"):
        assert figure in figures, out
    assert rows[2][0].strip() == "fanout S=5 M=20"
    p50 = next(row for row in rows if row[1].strip() == "p50_ms")
    assert p50[0].strip() == "latency S=5 50/s"
    assert p50[5].strip().endswith("%")  # the proxy's share of the latency
    assert "INVALID" not in out


def test_the_presence_storm_benchmark_runs_both_modes_and_every_client_lists_everyone():
    result = run_benchmark("presence_storm.py", "--clients", "20")
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["batched", "previous"], result.stdout
    for row in rows:
        assert "(20/20)" in row, row  # every client's presence listed all 20
        assert "x final state" in row


def test_the_reconnect_storm_benchmark_runs_both_modes_and_every_client_recovers():
    result = run_benchmark(
        "reconnect_storm.py", "--clients", "10", "--history", "5", "--rate", "10"
    )
    rows = result.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["batched", "previous"], result.stdout
    for row in rows:
        assert ", 10/10);" in row, row  # all 10 recovered
        assert "live latency" in row


def test_the_idle_memory_benchmark_reports_per_connection_and_by_file():
    result = run_benchmark("idle_memory.py", "--connections", "5")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("idle memory: 5 joined connections"), result.stdout
    assert "  by file (KB/connection):" in lines
    assert "  by line (bytes/connection):" in lines


def test_the_widget_relay_benchmark_runs_and_reports_both_transports_and_the_ramp():
    result = run_benchmark("widget_relay.py", "--messages", "20", "--ramp", "100", "--step", "0.2")
    lines = result.stdout.splitlines()
    assert lines[0] == "widget_relay: 20 messages at 50 msg/s into an idle kernel's widget"
    for transport in ("kernel", "direct"):
        (row,) = [line for line in lines if line.strip().startswith(transport)]
        assert "received 20 of 20" in row
        assert "latency p50 ms" in row
    assert any(line.strip().startswith("ramp    100 msg/s") for line in lines)
    assert any("relay sustained into one widget" in line for line in lines)


def test_the_connect_storm_benchmark_runs_and_every_client_joins():
    result = run_benchmark("connect_storm.py", "--clients", "20", "--spread", "0.5")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("connect storm: 20 clients"), result.stdout
    assert "(20/20)" in lines[1]
    assert "gave up 0" in lines[1]


def test_the_broadcast_10k_benchmark_runs_in_several_processes_and_reports_percentiles():
    result = run_benchmark(
        "broadcast_10k.py", "--subscribers", "20", "--processes", "2", "--seconds", "2"
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("broadcast_10k: 20 subscribers in 2 processes"), result.stdout
    assert "p99" in lines[1]
    assert "generator CPU" in lines[1]


def test_the_many_topics_benchmark_reports_many_one_and_their_ratio_before_and_after():
    result = run_benchmark(
        "many_topics.py",
        "--topics",
        "6",
        "--subscribers",
        "2",
        "--publishers",
        "3",
        "--messages",
        "10",
        "--one-messages",
        "2",
        "--runs",
        "1",
        "--processes",
        "2",
        "--before",
        "HEAD",
        timeout=600,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("many_topics: 6 topics x 2 subscribers (12 connections"), lines
    assert lines[1].split() == ["target", "figure", "many", "one", "many/one"]
    figures = ["acked msgs/s", "deliveries/s", "publisher CPU", "subscriber CPU"]
    for label in ("extension@", "extension "):  # HEAD's package, then the working tree's
        rows = [line for line in lines if line.startswith(label) and "after/before" not in line]
        assert [row[19:35].strip() for row in rows] == figures, result.stdout
        for row in rows:
            assert len(row[35:].split()) == 3
    ratios = [line.split()[-1] for line in lines if "after/before" in line]
    assert len(ratios) == 4, result.stdout
    assert "INVALID" not in result.stdout


def test_the_broadcast_cost_benchmark_reports_before_after_and_their_ratio():
    result = run_benchmark(
        "broadcast_cost.py", "--connections", "5", "--broadcasts", "2", "--before", "HEAD"
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("broadcast_cost: one message to 5 idle joined connections")
    assert lines[1].split() == ["server_cpu_ms", "wall_s", "generator_cpu", "reached", "all"]
    assert lines[2].startswith("before (")
    assert lines[3].startswith("after (working tree)")
    for row in lines[2:4]:
        assert row.split()[-1] == "2/2"  # every broadcast reached every connection
    assert lines[4].startswith("after / before")
