"""The package as it was at a git revision, for a benchmark's "before" side by side with
the working tree's "after" in one run.

    with revision("HEAD~1") as path:   # a directory to put first on PYTHONPATH
        ...
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def revision(rev: str) -> Iterator[Path]:
    """``src/`` of ``rev`` in a temporary directory (removed afterwards)."""
    tmp = Path(tempfile.mkdtemp(prefix="channels-rev-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        yield tmp / "src"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe(rev: str) -> str:
    """``rev`` as a short commit id."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()
