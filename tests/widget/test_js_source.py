"""The JS side agrees with the Python side: js/constants.js mirrors constants.py, and no
module in js/ turns a string into HTML."""

from __future__ import annotations

import enum
import json
import re
import shutil
import subprocess

from jupyter_channels import constants

from .conftest import REPO_ROOT, missing

JS = REPO_ROOT / "js"
#: Every enum and value of constants.py that the browser uses, by its JS name.
MIRRORED_ENUMS = ("Event", "Status", "ErrorCode", "CloseCode", "Kind", "Subject")
MIRRORED_VALUES = (
    "PING_TEXT",
    "WS_PATH",
    "REST_ROOT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HISTORY_LIMIT",
    "MAX_HISTORY_LIMIT",
)
#: DOM APIs that parse a string as HTML.
HTML_SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|srcdoc")


def js_constants() -> dict[str, object]:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    script = (
        "const m = await import(process.argv[1]);"
        "console.log(JSON.stringify({...m, TOPIC_RE: m.TOPIC_RE.source}));"
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script, (JS / "constants.js").as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return dict(json.loads(out))


def test_js_constants_mirror_constants_py() -> None:
    js = js_constants()
    for name in MIRRORED_ENUMS:
        members: type[enum.Enum] = getattr(constants, name)
        assert js[name] == {m.name: m.value for m in members}, name
    for name in MIRRORED_VALUES:
        assert js[name] == getattr(constants, name), name
    assert js["TOPIC_RE"] == constants.TOPIC_RE.pattern


def test_no_js_module_parses_strings_as_html() -> None:
    sources = [p for p in JS.rglob("*.js") if "node_modules" not in p.parts]
    assert sources
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not HTML_SINKS.search(line), f"{path.relative_to(REPO_ROOT)}:{number}: {line}"


def test_the_built_bundle_loads_from_anywidgets_esm_alone() -> None:
    """VS Code and Colab load the widget's ``_esm`` as one module: the bundle imports
    nothing (no other module, no CDN)."""
    bundle = (REPO_ROOT / "src" / "jupyter_channels" / "static" / "widget.js").read_text()
    # (Not inside a string: highlight.js lists "import" and "from" as keywords.)
    assert not re.search(r"""(?<!["'])\bimport\s*[("'{*]|(?<!["'])\bfrom\s*["']""", bundle)
    assert not re.search(r"""\brequire\s*\(""", bundle)
