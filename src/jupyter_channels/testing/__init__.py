"""Testing channels without a Jupyter server: a pytest plugin in the spirit of Phoenix's
``ChannelTest``.

Installed with the package (the ``pytest11`` entry point), it adds one fixture,
``channel_case``: call it with a channel class (served on every topic) or a
``{pattern: class}`` dict to get a :class:`ChannelCase`, an in-process hub with the
real routing, hooks, history and presence, and no sockets. Its clients speak the
wire protocol and assert on what the hub sends them::

    import pytest
    from chat_room_channel import ChatRoomChannel

    pytestmark = pytest.mark.anyio      # or pytest-asyncio's mark

    async def test_a_join_is_announced(channel_case):
        case = channel_case({"chat_room:*": ChatRoomChannel})
        alice = case.connect(user="alice")
        reply = await alice.join("chat_room:1", {"invite": "ok"})
        reply.assert_ok()
        await alice.assert_broadcast("user_joined", {"name": "alice"})

        ref = await alice.push("chat_room:1", "text", {"text": "hi"})
        await alice.assert_reply(ref, "ok")
        await alice.assert_presence("chat_room:1", {"alice"})

Expected payloads and responses match when every key given is equal (other keys
are ignored), as Phoenix's map patterns do. ``assert_*`` wait up to ``timeout``
(1 s) on the event loop for a match; ``refute_broadcast`` waits its whole
``timeout`` (0.1 s) and fails if a match arrives. A matched message or reply is
consumed, like ``assert_receive``. ``ChannelCase`` is also an async context manager
for use without the fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .case import ChannelCase, Channels
from .client import ChannelClient, Reply

__all__ = ["ChannelCase", "ChannelClient", "Reply", "channel_case"]


def _pytest_fixture() -> Any:
    try:
        import pytest
    except ImportError:  # ChannelCase works without pytest; only the fixture needs it
        return None

    @pytest.fixture
    def channel_case() -> Iterator[Callable[..., ChannelCase]]:
        """``channel_case(ChannelClass)`` or ``channel_case({pattern: ChannelClass}, ...)``:
        a :class:`ChannelCase`, stopped after the test."""
        cases: list[ChannelCase] = []

        def make(channels: Channels, **options: Any) -> ChannelCase:
            case = ChannelCase(channels, **options)
            cases.append(case)
            return case

        yield make
        for case in cases:
            case.close_soon()

    return channel_case


channel_case = _pytest_fixture()
