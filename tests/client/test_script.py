"""A plain Python script, outside any kernel: given the server's URL and token, or finding
the running server through Jupyter's runtime files as the CLI does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from traitlets.config import Config

import jupyter_channels as jc

from ..doc_blocks import code_block
from ..runtime_files import copy_server_file, stale_server_file
from ..support import spawn, wait_until
from .conftest import DISCOVERY_ENV

ROUND_TRIP = """\
import json
import sys
import time

import jupyter_channels as jc


def round_trip(room):
    received = []
    room.on("*", lambda message: received.append(message.payload))
    offsets = [room.send("text", {"n": n}) for n in range(3)]
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"offsets": offsets, "received": received}))

"""

SCRIPT = (
    ROUND_TRIP
    + """
url, token, topic = sys.argv[1:]
with jc.connect(url, token) as conn:
    round_trip(conn.join(topic))
"""
)


def test_a_script_with_an_explicit_url_and_token_sends_and_receives(spawned_server, tmp_path):
    topic = "script:run"
    script = tmp_path / "publish.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in DISCOVERY_ENV}

    with jc.connect(spawned_server.http_url, spawned_server.token) as conn:
        watched = conn.join(topic)
        seen = []
        watched.on("*", seen.append)

        done = subprocess.run(
            [sys.executable, str(script), spawned_server.http_url, spawned_server.token, topic],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        output = json.loads(done.stdout)
        assert output == {
            "offsets": [1, 2, 3],
            "received": [{"n": 0}, {"n": 1}, {"n": 2}],
        }

        wait_until(lambda: len(seen) == 3)
        assert [m.offset for m in seen] == [1, 2, 3]
        assert [m.payload for m in seen] == [{"n": 0}, {"n": 1}, {"n": 2}]
        # Made with the Jupyter token, not the kernel token.
        assert {m.sender["kind"] for m in seen} == {"browser"}


# -- a script started from a terminal: no url, no kernel environment ---------------------------

#: The server is found on its own: no url, no token.
FOUND_SCRIPT = ROUND_TRIP + "round_trip(jc.join(sys.argv[1]))\n"


def run_script(source: str, runtime: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``source`` as a terminal would: no discovery variables, only Jupyter's runtime dir."""
    script = cwd / "script.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in DISCOVERY_ENV}
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False,
    )  # fmt: skip


def test_a_script_from_a_terminal_finds_the_server_through_its_runtime_file(
    spawned_server, tmp_path
):
    done = run_script(FOUND_SCRIPT, spawned_server.root / "runtime", tmp_path, "script:found")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["received"] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_script_skips_a_stale_runtime_file_newer_than_the_live_one(spawned_server, tmp_path):
    runtime = tmp_path / "runtime"
    copy_server_file(spawned_server, runtime, age=60)
    stale_server_file(runtime)

    done = run_script(FOUND_SCRIPT, runtime, tmp_path, "script:stale")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["received"] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_script_with_no_server_to_find_says_what_it_tried(tmp_path):
    runtime = tmp_path / "runtime"
    stale = stale_server_file(runtime)

    done = run_script(FOUND_SCRIPT, runtime, tmp_path, "script:none")

    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("jupyter_channels.client.errors.ServerNotFound: not_found: ")
    assert "$JUPYTER_CHANNELS_URL is not set" in error
    assert "$JPY_PARENT_PID is not set" in error
    assert f"{stale} is stale" in error
    assert 'connect(url="http://localhost:8888/"' in error


def test_the_readmes_script_example_runs_as_written_against_a_running_server(tmp_path):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "chat.py").write_text(code_block("README.md", "# mypkg/chat.py"))
    config = Config()
    exec(code_block("README.md", "# jupyter_server_config.py"), {"c": config})
    server = spawn(
        tmp_path / "server", tmp_path / "history.sqlite", extra_path=(tmp_path,),
        channels=dict(config.ChannelsApp.channels),
    ).start()  # fmt: skip
    try:
        with jc.connect(server.http_url, server.token) as conn:
            watcher = conn.join("chat_room:42", params={"invite": "ok"})
            example = code_block("README.md", "# in a notebook, a kernel, or a script")

            done = run_script(example, server.root / "runtime", tmp_path)

            assert done.returncode == 0, done.stderr
            wait_until(lambda: [m.payload for m in watcher.messages][-1:] == [{"text": "hi"}])
    finally:
        server.stop()
