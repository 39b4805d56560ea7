"""js/client.js in Node against a real service: ``push(..., {ephemeral: true})``,
``edit``, ``delete`` and ``mute``, by the author, another member and a moderator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..hosts import config_file
from ..service_support import SpawnedService, token_of
from ..support import REPO_ROOT

SCRIPT = Path(__file__).with_name("js_conversation.mjs")
RULES = [{"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"}]


@pytest.fixture
def service(tmp_path):
    started = SpawnedService(tmp_path, config=config_file({"permissions": RULES})).start()
    try:
        yield started
    finally:
        started.stop()


def test_the_js_client_pushes_ephemeral_edits_deletes_and_mutes(service):
    tokens = [token_of(user) for user in ("ada", "alan", "grace")]
    done = subprocess.run(
        ["node", "--experimental-websocket", SCRIPT, service.ws_url, "chat:js", *tokens],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    steps = {line["step"]: line.get("ok", line.get("error")) for line in lines if "step" in line}
    assert steps == {
        "typing": {},
        "author edits": {"offset": 2},
        "other edits": "unauthorized",
        "other deletes": "unauthorized",
        "moderator deletes": {"offset": 3},
        "member mutes": "unauthorized",
        "moderator mutes": {"offset": 4},
        "muted pushes": "unauthorized",
        "muted types": "unauthorized",
        "moderator lifts": {"offset": 5},
        "unmuted pushes": {"offset": 6},
    }
    [seen] = [line["seen"] for line in lines if "seen" in line]
    assert seen == [
        ["typing", None, True, "ada"],
        ["text", 1, False, "ada"],
        ["edit", 2, False, "ada"],
        ["delete", 3, False, "grace"],
        ["mute", 4, False, "grace"],
        ["mute", 5, False, "grace"],
        ["text", 6, False, "alan"],
    ]
