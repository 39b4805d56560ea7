"""``jupyter channels generate``: a channel module to start from, and its tests."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from string import Template

CHANNEL_TEMPLATE = Template('''"""The $name channel: serves every topic matching "$prefix:*".

Register it in jupyter_server_config.py; the server imports it as ``$module``,
so this directory must be on the server's Python path (``PYTHONPATH``):

    c.ChannelsApp.channels = {"$prefix:*": "$module:$cls"}

Its tests are in test_$module.py (run ``pytest``).
"""

from jupyter_channels import Channel, Reject


class $cls(Channel):
    """Messages sent to a $prefix topic go to everyone on it."""

    async def handle_joined(self, client, message):
        """Called when ``client`` asks to join ``message.topic``; ``message.payload``
        holds the join params. Raise Reject("why") to refuse."""
        if message.payload.get("banned"):
            raise Reject("not allowed in this room")
        await self.broadcast("user_joined", {"name": client.user.display_name})

    async def handle_message(self, client, message):
        """Called for each message a joined client sends. A returned dict is added
        to the sender's ok reply."""
        await self.rebroadcast(message)

    async def handle_leave(self, client):
        """Called when ``client`` leaves the topic or its connection drops."""
        await self.broadcast("user_left", {"name": client.user.display_name})
''')

TEST_TEMPLATE = Template('''"""Tests of $cls on an in-process hub (jupyter_channels.testing)."""

import pytest

from $module import $cls

pytestmark = pytest.mark.anyio
TOPIC = "$prefix:lobby"


@pytest.fixture
def case(channel_case):
    return channel_case({"$prefix:*": $cls})


async def test_a_join_is_announced_to_the_topic(case):
    alice = case.connect(user="alice", name="Alice")

    reply = await alice.join(TOPIC)

    reply.assert_ok()
    await alice.assert_broadcast("user_joined", {"name": "Alice"})
    await alice.assert_presence(TOPIC, {"alice"})


async def test_a_banned_client_is_refused(case):
    mallory = case.connect(user="mallory")

    reply = await mallory.join(TOPIC, {"banned": True})

    reply.assert_error("join_rejected", "not allowed in this room")
    await mallory.refute_broadcast("user_joined")


async def test_a_message_reaches_everyone_on_the_topic(case):
    alice, bob = case.connect(user="alice"), case.connect(user="bob")
    (await alice.join(TOPIC)).assert_ok()
    (await bob.join(TOPIC)).assert_ok()

    ref = await alice.push(TOPIC, "text", {"text": "hi"})

    reply = await alice.assert_reply(ref, "ok")
    for client in (alice, bob):
        message = await client.assert_broadcast("text", {"text": "hi"})
        assert message["offset"] == reply.response["offset"]
        assert message["from"]["user"] == "alice"


async def test_leaving_is_announced_to_those_who_stay(case):
    alice, bob = case.connect(user="alice", name="Alice"), case.connect(user="bob")
    (await alice.join(TOPIC)).assert_ok()
    (await bob.join(TOPIC)).assert_ok()

    (await alice.leave(TOPIC)).assert_ok()

    await bob.assert_broadcast("user_left", {"name": "Alice"})
    await bob.assert_presence(TOPIC, {"bob"})
''')


def snake_case(name: str) -> str:
    """``ChatRoom`` -> ``chat_room``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|[^A-Za-z0-9]+", "_", name).strip("_")
    return words.lower()


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` wrote, and how to serve it."""

    channel: Path
    test: Path
    pattern: str
    spec: str

    @property
    def module(self) -> str:
        return self.spec.split(":")[0]

    @property
    def config_line(self) -> str:
        """The ``jupyter_server_config.py`` line registering the channel."""
        return f"c.ChannelsApp.channels = {json.dumps({self.pattern: self.spec})}"

    @property
    def command(self) -> str:
        """A shell command that starts JupyterLab, from any directory, with the channel
        importable and registered."""
        path = shlex.quote(str(self.channel.parent.resolve()))
        trait = shlex.quote(f"--ChannelsApp.channels={json.dumps({self.pattern: self.spec})}")
        return f"PYTHONPATH={path} jupyter lab {trait}"


def generate(name: str, directory: Path) -> Generated:
    """Write ``<name>_channel.py`` and ``test_<name>_channel.py`` in ``directory``.

    Raises ``ValueError`` for a name that makes no module name, ``FileExistsError``
    rather than overwrite a file.
    """
    prefix = snake_case(name)
    if not prefix or not prefix[0].isalpha():
        raise ValueError(f"{name!r} is not a usable channel name (try e.g. ChatRoom)")
    cls = "".join(word.capitalize() for word in prefix.split("_")) + "Channel"
    module = f"{prefix}_channel"
    channel, test = directory / f"{module}.py", directory / f"test_{module}.py"
    for path in (channel, test):
        if path.exists():
            raise FileExistsError(f"{path} already exists; not overwriting it")
    fields = {"name": name, "prefix": prefix, "cls": cls, "module": module}
    channel.write_text(CHANNEL_TEMPLATE.substitute(fields))
    test.write_text(TEST_TEMPLATE.substitute(fields))
    return Generated(channel, test, f"{prefix}:*", f"{module}:{cls}")
