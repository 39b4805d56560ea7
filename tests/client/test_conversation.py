"""The Python client's conversation calls against a real service with several users:
``Message.edit`` / ``Message.delete``, ``Subscription.edit`` / ``delete`` / ``mute``,
``on("edit")`` / ``on("delete")``, and ephemeral sends.

ada and alan are members, grace (group ``teachers``) moderates.
"""

from __future__ import annotations

import asyncio

import pytest

import jupyter_channels as jc

from ..hosts import config_file
from ..service_support import SpawnedService, token_of
from ..support import wait_until

RULES = [{"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"}]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("conversation")
    traits = {"permissions": RULES, "presence_interval": 0}
    started = SpawnedService(root, config=config_file(traits)).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def connect(service):
    """``connect(user)``: a blocking connection of that user, closed after the test."""
    made = []

    def open_as(user: str) -> jc.Connection:
        made.append(jc.connect(service.ws_url, token_of(user)))
        return made[-1]

    yield open_as
    for conn in made:
        conn.close()


def received(room, offset: int) -> jc.Message:
    """The message ``room`` received at ``offset``, once it did."""
    wait_until(lambda: any(m.offset == offset for m in room.messages))
    return next(m for m in room.messages if m.offset == offset)


def test_a_received_message_edits_and_deletes_itself_and_others_get_both(connect):
    room = connect("ada").join("chat:py-own")
    watcher = connect("alan").join("chat:py-own")
    edits, deletes = [], []
    watcher.on("edit", edits.append)
    watcher.on("delete", deletes.append)

    message = received(room, room.send("text", {"text": "helo"}))
    edited = message.edit("hello")
    deleted = message.delete()

    wait_until(lambda: edits and deletes)
    [edit], [delete] = edits, deletes
    assert (edit.offset, edit.payload) == (edited, {"offset": message.offset, "text": "hello"})
    assert (delete.offset, delete.payload) == (deleted, {"offset": message.offset})
    assert edit.sender["user"] == delete.sender["user"] == "ada"


def test_editing_someone_elses_message_raises_unauthorized(connect):
    room = connect("ada").join("chat:py-theirs")
    watcher = connect("alan").join("chat:py-theirs")
    message = received(watcher, room.send("text", {"text": "ada's"}))
    with pytest.raises(jc.ChannelError) as refused:
        message.edit("alan's now")
    assert refused.value.code == "unauthorized"
    with pytest.raises(jc.ChannelError) as refused:
        watcher.delete(message.offset)
    assert refused.value.code == "unauthorized"


def test_a_moderator_deletes_anyones_message_and_mutes_a_user_until_lifted(connect):
    room = connect("ada").join("chat:py-moderated")
    moderator = connect("grace").join("chat:py-moderated")
    message = received(moderator, room.send("text", {"text": "spam"}))
    assert message.delete() > message.offset

    moderator.mute("ada", 3600)
    with pytest.raises(jc.ChannelError) as refused:
        room.send("text", {"text": "more spam"})
    assert refused.value.code == "unauthorized"
    assert "muted in 'chat:py-moderated' until" in refused.value.detail
    moderator.mute("ada", 0)
    assert room.send("text", {"text": "sorry"}) > 0


def test_only_stored_messages_of_a_subscription_can_be_edited(connect):
    with pytest.raises(ValueError, match="only a stored message"):
        jc.Message("chat:x", "text", {"text": "hi"}, offset=1).edit("no")


def test_an_ephemeral_send_returns_none_reaches_on_and_is_not_kept(connect):
    room = connect("ada").join("chat:py-typing")
    watcher = connect("alan").join("chat:py-typing")
    typing = []
    watcher.on("typing", typing.append)
    assert room.send("typing", ephemeral=True) is None
    wait_until(lambda: typing)
    assert (typing[0].offset, typing[0].ephemeral, typing[0].sender["user"]) == (None, True, "ada")
    offset = room.send("text", {"text": "after"})
    received(watcher, offset)
    assert [m.subject for m in watcher.messages] == ["text"]


async def test_the_asyncio_client_edits_through_the_received_message(service):
    async with jc.aconnect(service.ws_url, token_of("ada")) as conn:
        room = await conn.join("chat:py-async")
        received = aiter(room)
        await room.send("text", {"text": "one"})
        message = await asyncio.wait_for(anext(received), 10)
        offset = await message.edit("uno")
        edit = await asyncio.wait_for(anext(received), 10)
        assert (edit.offset, edit.subject, edit.payload) == (
            offset,
            "edit",
            {"offset": message.offset, "text": "uno"},
        )
