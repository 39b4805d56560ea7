"""A plain Python script (no kernel, nothing to discover) given the server's URL and token."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jupyter_channels as jc

from ..support import wait_until
from .conftest import DISCOVERY_ENV

SCRIPT = """\
import json
import sys
import time

import jupyter_channels as jc

url, token, topic = sys.argv[1:]
with jc.connect(url, token) as conn:
    room = conn.join(topic)
    received = []
    room.on("*", lambda message: received.append(message.payload))
    offsets = [room.send("text", {"n": n}) for n in range(3)]
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"offsets": offsets, "received": received}))
"""


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
