"""The Python code blocks of the project's docs, so tests can run them as written."""

from __future__ import annotations

import re

from .support import REPO_ROOT


def code_block(doc: str, first_line: str) -> str:
    """The one ```python block of ``doc`` (a path from the repository root) that starts
    with ``first_line``."""
    text = (REPO_ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if b.startswith(first_line)]
    assert len(blocks) == 1, f"{len(blocks)} blocks of {doc} start with {first_line!r}"
    return blocks[0]
