"""``jupyter_channels.testing``: channel tests on an in-process hub, as authors write them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_channels import Channel, Reject, testing
from jupyter_channels.testing import ChannelCase

from .doc_blocks import code_block
from .support import REPO_ROOT

#: The plugin's fixture, here as its entry point provides it once the package is installed.
channel_case = testing.channel_case


class Room(Channel):
    """Announces joins and leaves, pushes a welcome to the joiner, refuses the banned."""

    async def handle_joined(self, client, message):
        if message.payload.get("banned"):
            raise Reject("banned")
        await self.push(client, "welcome", {"to": client.user.username})
        await self.broadcast("user_joined", {"name": client.user.display_name})

    async def handle_message(self, client, message):
        await self.rebroadcast(message)
        return {"echoed": True}

    async def handle_leave(self, client):
        await self.broadcast("user_left", {"name": client.user.display_name})


@pytest.fixture
def case(channel_case):
    return channel_case({"room:*": Room})


async def test_replies_broadcasts_and_presence_are_asserted(case):
    alice, bob = case.connect(user="alice", name="Alice"), case.connect(user="bob")
    (await alice.join("room:1")).assert_ok({"offset": 0})
    await alice.assert_push("welcome", {"to": "alice"})

    (await bob.join("room:1")).assert_ok()
    await alice.assert_broadcast("user_joined", {"name": "bob"}, topic="room:1")
    await alice.assert_presence("room:1", {"alice", "bob"})

    ref = await bob.push("room:1", "text", {"text": "hi", "extra": 1})
    reply = await bob.assert_reply(ref, "ok", {"echoed": True})
    message = await alice.assert_broadcast("text", {"text": "hi"})
    assert message["offset"] == reply.response["offset"]
    assert message["from"] == {"id": bob.client.id, "user": "bob", "name": "bob", "kind": "browser"}


async def test_an_error_reply_carries_its_reason_and_detail(case):
    alice, mallory = case.connect(user="alice"), case.connect(user="mallory")
    (await alice.join("room:1")).assert_ok()

    reply = await mallory.join("room:1", {"banned": True})

    assert reply.assert_error("join_rejected", "banned") == {
        "reason": "join_rejected",
        "detail": "banned",
    }
    with pytest.raises(AssertionError, match="expected an ok reply"):
        reply.assert_ok()
    (await mallory.join("lobby")).assert_error("unmatched_topic")
    await alice.refute_broadcast("user_joined", {"name": "mallory"})


async def test_a_missing_broadcast_fails_naming_the_frames_that_did_arrive(case):
    alice = case.connect(user="alice")
    (await alice.join("room:1")).assert_ok()

    with pytest.raises(AssertionError, match=r"no 'user_left' message .*\"welcome\""):
        await alice.assert_broadcast("user_left", timeout=0.2)


async def test_refute_broadcast_fails_when_the_broadcast_comes(case):
    alice, bob = case.connect(user="alice"), case.connect(user="bob")
    (await alice.join("room:1")).assert_ok()
    (await bob.join("room:1")).assert_ok()

    await alice.push("room:1", "text", {"text": "hi"})

    with pytest.raises(AssertionError, match="unexpected 'text' message"):
        await bob.refute_broadcast("text", {"text": "hi"})


async def test_a_dropped_connection_is_a_leave_for_those_who_stay(case):
    alice, bob = case.connect(user="alice", name="Alice"), case.connect(user="bob")
    (await alice.join("room:1")).assert_ok()
    (await bob.join("room:1")).assert_ok()

    alice.close()

    await bob.assert_broadcast("user_left", {"name": "Alice"})
    await bob.assert_presence("room:1", {"bob"})


async def test_a_kernel_client_is_stamped_as_a_kernel(case):
    kernel = case.connect(user="kernel", kind="kernel")
    (await kernel.join("room:1")).assert_ok()

    await kernel.push("room:1", "metric", {"loss": 0.1})

    message = await kernel.assert_broadcast("metric")
    assert message["from"]["kind"] == "kernel"


async def test_a_case_used_as_a_context_manager_closes_its_clients_on_exit():
    async with ChannelCase(Room) as case:
        alice = case.connect(user="alice")
        (await alice.join("any:topic")).assert_ok()

    assert alice.close_code == 1001


# -- as a channel author runs it ---------------------------------------------------------------


def entry_point_dist(root: Path) -> Path:
    """A distribution declaring only the project's pytest11 entry points, so that pytest
    loads the plugin exactly as it does once the package is installed."""
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    # Python 3.10 has no tomllib; the table is `"name" = "module"` lines.
    table = re.search(r"^\[project\.entry-points\.pytest11\]\n(.*?)^$", pyproject, re.M | re.S)
    assert table, "pyproject.toml declares no pytest11 entry point"
    points = [line.replace('"', "") for line in table[1].splitlines() if "=" in line]
    dist = root / "jupyter_channels_plugin-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jupyter-channels-plugin\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(points) + "\n")
    return root


def test_the_generated_and_documented_tests_pass_with_the_plugin_from_its_entry_point(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    generated = subprocess.run(
        [sys.executable, "-m", "jupyter_channels.cli", "generate", "ChatRoom"],
        cwd=work, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "test_chat_room_channel.py" in generated.stdout
    # A suite that does not use the plugin runs as before.
    (work / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    # And the example of the docs, on the docs' own channel.
    (work / "mypkg").mkdir()
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "chat.py").write_text(code_block("docs/channels.md", "# mypkg/chat.py"))
    (work / "test_chat.py").write_text(code_block("docs/channels.md", "# test_chat.py"))
    env = {**os.environ, "PYTHONPATH": str(entry_point_dist(tmp_path / "site"))}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--strict-markers"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed" in result.stdout
