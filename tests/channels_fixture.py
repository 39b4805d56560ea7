"""Channels the tests register through ``c.ChannelsApp.channels``, and test identities.

Each channel shows one part of the contract; they are referenced by
``"tests.channels_fixture:ClassName"``. Hooks that the tests observe record
their calls in :data:`CALLS` (the server runs in the test's own process) and,
where it matters on the wire, broadcast something.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

from jupyter_channels import Channel, Reject

#: ``(hook, topic, username)`` of every recorded hook call, oldest first.
CALLS: list[tuple[str, str, str]] = []

# -- identities ---------------------------------------------------------------------------------

#: username -> (display name, initials, color)
USERS = {
    "ada": ("Ada Lovelace", "AL", "#e91e63"),
    "grace": ("Grace Hopper", "GH", "#3f51b5"),
    "alan": ("Alan Turing", "AT", "#009688"),
}
USER_HEADER = "X-Test-User"
#: username -> groups: Jupyter's own users have none, an identity source such as a hub does.
GROUPS = {"ada": ("red",), "grace": ("teachers",)}


@dataclass
class GroupedUser(User):
    """A Jupyter ``User`` with the ``groups`` an identity source such as a hub gives."""

    groups: tuple[str, ...] = ()


class HeaderUsers(IdentityProvider):
    """Token-authenticated requests are the user named by the ``X-Test-User`` header
    (default ``ada``) instead of a random anonymous one, so frames can be pinned."""

    def generate_anonymous_user(self, handler: Any) -> User:
        username = handler.request.headers.get(USER_HEADER, "ada")
        name, initials, color = USERS[username]
        return GroupedUser(username, name, name, initials, None, color, GROUPS.get(username, ()))

    def user_from_cookie(self, cookie_value: str) -> User | None:
        # A browser's later requests carry the login cookie, which keeps no groups.
        user = super().user_from_cookie(cookie_value)
        if user is None:
            return None
        return GroupedUser(**asdict(user), groups=GROUPS.get(user.username, ()))


def as_user(username: str) -> dict[str, Any]:
    """``channels_ws``/``jp_fetch`` keyword arguments that authenticate as ``username``."""
    return {"headers": {USER_HEADER: username}}


def with_test_users(config: dict[str, Any]) -> dict[str, Any]:
    """``jp_server_config`` with :class:`HeaderUsers` as the identity provider."""
    config["ServerApp"]["identity_provider_class"] = HeaderUsers
    return config


# -- channels -----------------------------------------------------------------------------------

_M = "tests.channels_fixture"

#: Every test channel by pattern: the ``channels`` trait of the test servers.
CHANNELS: dict[str, str] = {
    "invite:*": f"{_M}:InviteOnly",
    "boom:*": f"{_M}:Failing",
    "slow:*": f"{_M}:Slow",
    "readonly:*": f"{_M}:ReadOnly",
    "plain:*": f"{_M}:PlainHooks",
    "accept:*": f"{_M}:Accepting",
    "silent:*": f"{_M}:Silent",
    "others:*": f"{_M}:EchoOthers",
    "welcome:*": f"{_M}:WelcomeOthers",
    "push:*": f"{_M}:Pusher",
    "kick:*": f"{_M}:Kicker",
    "slowjoin:*": f"{_M}:SlowJoin",
    "tick:*": f"{_M}:Ticker",
    # Amber registers a channel class per "prefix:*" topic path.
    "chat_room:*": f"{_M}:Accepting",
    # Listed least specific first: the order of the config must not matter.
    "route:*": f"{_M}:ServedPrefix",
    "route:vip:*": f"{_M}:ServedLongerPrefix",
    "route:vip:1": f"{_M}:ServedExact",
}


class InviteOnly(Channel):
    """Joins need ``{"invite": "ok"}``; announces joins and leaves to the topic."""

    async def handle_joined(self, client, message):
        if message.payload.get("invite") != "ok":
            raise Reject("invite required")
        CALLS.append(("joined", message.topic, client.user.username))
        await self.broadcast("user_joined", {"name": client.user.display_name})

    async def handle_message(self, client, message):
        await self.rebroadcast(message)

    async def handle_leave(self, client):
        CALLS.append(("leave", self.current_topic(), client.user.username))
        await self.broadcast("user_left", {"name": client.user.display_name})


class Failing(Channel):
    """``handle_message`` raises unless the subject is ``ok``."""

    async def handle_message(self, client, message):
        if message.subject != "ok":
            raise RuntimeError("the channel is broken")
        await self.rebroadcast(message)


class Slow(Channel):
    """``handle_message`` takes longer than any test's ``hook_timeout``."""

    async def handle_message(self, client, message):
        await asyncio.sleep(30)


class SlowJoin(Channel):
    """``handle_joined`` takes a moment (``{"wait": seconds}``); hooks are recorded."""

    async def handle_joined(self, client, message):
        await asyncio.sleep(message.payload.get("wait", 0.5))
        CALLS.append(("joined", message.topic, client.user.username))

    async def handle_message(self, client, message):
        await self.rebroadcast(message)

    def handle_leave(self, client):
        CALLS.append(("leave", self.current_topic(), client.user.username))


class Ticker(Channel):
    """``handle_joined`` starts a task that broadcasts ``tick`` after the hook returned."""

    def handle_joined(self, client, message):
        asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self):
        await asyncio.sleep(0.05)
        await self.broadcast("tick", {})

    async def handle_message(self, client, message):
        await self.rebroadcast(message)


class ReadOnly(Channel):
    """Anyone may join; ``handle_message`` refuses with :class:`Reject`."""

    async def handle_message(self, client, message):
        raise Reject("this topic is read-only")


class PlainHooks(Channel):
    """Every hook a plain function: publishing without awaiting, returning a dict."""

    def handle_joined(self, client, message):
        CALLS.append(("joined", message.topic, client.user.username))
        self.broadcast("user_joined", {"name": client.user.display_name})

    def handle_message(self, client, message):
        self.rebroadcast(message)
        return {"plain": True}

    def handle_leave(self, client):
        CALLS.append(("leave", self.current_topic(), client.user.username))


class Accepting(Channel):
    """Rebroadcasts and returns a dict, which is merged into the ok reply."""

    async def handle_message(self, client, message):
        await self.rebroadcast(message)
        return {"accepted": True, "subject": message.subject}


class Silent(Channel):
    """Publishes nothing and returns nothing: the ok reply's response is empty."""

    async def handle_message(self, client, message):
        return None


class EchoOthers(Channel):
    """Sends every message to every subscriber but its sender (``broadcast_from``)."""

    async def handle_message(self, client, message):
        await self.broadcast_from(client, message.subject, message.payload)


class WelcomeOthers(Channel):
    """``handle_joined`` tells everyone but the joiner that it arrived (``broadcast_from``)."""

    async def handle_joined(self, client, message):
        await self.broadcast_from(client, "arrived", {"name": client.user.display_name})

    async def handle_message(self, client, message):
        await self.rebroadcast(message)


class Pusher(Channel):
    """Answers the sender alone with a ``pong`` message outside history (``push``)."""

    async def handle_message(self, client, message):
        await self.push(client, "pong", message.payload)


class Kicker(Channel):
    """A ``kick me`` message ends the sender's subscription (``kick``)."""

    async def handle_message(self, client, message):
        if message.subject == "kick me":
            await self.kick(client, "kicked by the channel")
        else:
            await self.rebroadcast(message)

    async def handle_leave(self, client):
        CALLS.append(("leave", self.current_topic(), client.user.username))
        await self.broadcast("user_left", {"name": client.user.display_name})


class _Named(Channel):
    """Replies with the name of the class that served the message."""

    async def handle_message(self, client, message):
        return {"served_by": type(self).__name__}


class ServedExact(_Named):
    pass


class ServedPrefix(_Named):
    pass


class ServedLongerPrefix(_Named):
    pass


class ServedAnywhere(_Named):
    pass


class NotAChannel:
    """Not a :class:`Channel` subclass: loading it must fail."""
