"""The live cell benchmark runs against a real server and kernel and reports its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parent.parent.parent / "benchmarks" / "live_cell.py"


def test_the_live_cell_benchmark_runs_and_reports_what_a_follower_receives():
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--seconds", "1", "--followers", "2", "--prints", "500"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("live_cell: cells of 1 s changing 100 times a second, 2 followers")
    for case in ("progress", "log"):
        (row,) = [line for line in lines if line.strip().startswith(case)]
        assert "updates/s" in row
        assert "KiB/s per follower" in row
    (sender,) = [line for line in lines if line.strip().startswith("sender:")]
    assert "500 prints in a tight loop" in sender
