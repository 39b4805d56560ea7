"""A test client of a :class:`~jupyter_channels.testing.ChannelCase`: it speaks the wire
protocol to the hub and asserts on what the hub sends back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..constants import PING_TEXT, Event, Kind, Status

if TYPE_CHECKING:
    from ..connection import Client, Identity
    from .case import ChannelCase

#: How long ``assert_*`` wait for a match by default (seconds).
ASSERT_TIMEOUT = 1.0
#: How long ``refute_broadcast`` watches by default (seconds), as Phoenix's ``refute_timeout``.
REFUTE_TIMEOUT = 0.1


def _matches(actual: Any, expected: Any) -> bool:
    if expected is None:
        return True
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(key in actual and actual[key] == value for key, value in expected.items())
    return bool(actual == expected)


@dataclass(frozen=True)
class Reply:
    """The hub's answer to a frame that carried a ``ref``."""

    topic: str | None
    ref: str
    status: str
    response: Any

    def assert_ok(self, response: dict[str, Any] | None = None) -> Any:
        """Fail unless the reply is ok (with ``response``'s keys); returns the response."""
        if self.status != Status.OK.value or not _matches(self.response, response):
            raise AssertionError(f"expected an ok reply matching {response!r}, got {self}")
        return self.response

    def assert_error(self, reason: str | None = None, detail: str | None = None) -> Any:
        """Fail unless the reply is an error (with this ``reason`` and ``detail``)."""
        expected = {k: v for k, v in (("reason", reason), ("detail", detail)) if v is not None}
        if self.status != Status.ERROR.value or not _matches(self.response, expected):
            raise AssertionError(f"expected an error reply matching {expected!r}, got {self}")
        return self.response


def _texts(data: bytes) -> Iterator[str]:
    """The payloads of the server's WebSocket text frames in ``data`` (whole frames)."""
    i = 0
    while i < len(data):
        length = data[i + 1] & 0x7F
        i += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, i)
            i += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, i)
            i += 8
        yield data[i : i + length].decode()
        i += length


class _Transport:
    """Hands the hub's frames to a :class:`ChannelClient` instead of a socket."""

    def __init__(self, client: ChannelClient) -> None:
        self.client = client

    def write(self, chunks: list[bytes]) -> None:
        for text in _texts(b"".join(bytes(chunk) for chunk in chunks)):
            self.client._receive(text)

    def close(self, code: int, reason: str) -> None:
        self.client.close_code, self.client.close_reason = code, reason

    def ping(self) -> None:
        pass


class ChannelClient:
    """One connection to a :class:`ChannelCase`'s hub, as a test drives it.

    ``frames`` holds every frame received and not yet consumed by an assertion;
    ``presence[topic]`` is the topic's presence as this client last heard it.
    """

    def __init__(self, case: ChannelCase, user: Identity, kind: Kind) -> None:
        self.case = case
        self.frames: list[dict[str, Any]] = []
        self.presence: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._refs = itertools.count(1)
        self._arrived = asyncio.Event()
        self.client: Client = case.hub.connect(
            f"{user.username}-{next(case._ids)}", user, kind, _Transport(self)
        )

    def __repr__(self) -> str:
        return f"<ChannelClient {self.client.id}>"

    # -- what the hub sends ---------------------------------------------------------------

    def _receive(self, text: str) -> None:
        if text == PING_TEXT:
            return
        frame = json.loads(text)
        event, topic = frame.get("event"), frame.get("topic")
        if event == Event.PRESENCE_STATE.value:
            self.presence[topic] = {user: list(e["metas"]) for user, e in frame["payload"].items()}
        elif event == Event.PRESENCE_DIFF.value:
            self._apply_diff(topic, frame["payload"])
        self.frames.append(frame)
        self._arrived.set()

    def _apply_diff(self, topic: str, diff: dict[str, Any]) -> None:
        state = self.presence.setdefault(topic, {})
        for user, entry in diff.get("leaves", {}).items():
            gone = {meta["phx_ref"] for meta in entry["metas"]}
            left = [meta for meta in state.get(user, []) if meta["phx_ref"] not in gone]
            if left:
                state[user] = left
            else:
                state.pop(user, None)
        for user, entry in diff.get("joins", {}).items():
            state.setdefault(user, []).extend(entry["metas"])

    async def _wait_for(
        self, found: Callable[[], Any], timeout: float, what: Callable[[], str]
    ) -> Any:
        """``found()``'s first truthy value, re-checked as frames arrive, within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = found()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{what()} within {timeout} s")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        for i, frame in enumerate(self.frames):
            if match(frame):
                return self.frames.pop(i)
        return None

    async def _expect(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """Take the first frame ``match`` accepts, waiting up to ``timeout`` for it."""
        found = await self._wait_for(
            lambda: self._take(match), timeout, lambda: what + self._seen()
        )
        return dict(found)

    def _seen(self) -> str:
        return "; frames not yet asserted on: " + json.dumps(self.frames)[:2000]

    # -- what the test sends --------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> str:
        """Send a raw frame, with a fresh ``ref`` unless it has one; returns the ref."""
        frame = {"ref": str(next(self._refs)), **frame}
        await self.case._ensure_started()
        await self.case.hub.receive(self.client, json.dumps(frame))
        return str(frame["ref"])

    async def join(
        self,
        topic: str,
        payload: dict[str, Any] | None = None,
        *,
        history: int | None = None,
        since: int | None = None,
        timeout: float = ASSERT_TIMEOUT,
    ) -> Reply:
        """Join ``topic`` with ``payload`` as params; returns the reply, ok or error."""
        frame: dict[str, Any] = {"event": "join", "topic": topic, "payload": payload or {}}
        if history is not None:
            frame["history"] = history
        if since is not None:
            frame["since"] = since
        return await self.assert_reply(await self.send(frame), timeout=timeout)

    async def push(self, topic: str, subject: str, payload: Any = None) -> str:
        """Send a message into ``topic``'s channel; returns its ref for :meth:`assert_reply`."""
        frame = {"event": "message", "topic": topic, "subject": subject, "payload": payload}
        return await self.send({**frame, "payload": {} if payload is None else payload})

    async def leave(self, topic: str, *, timeout: float = ASSERT_TIMEOUT) -> Reply:
        """Leave ``topic`` (``handle_leave`` runs); returns the reply."""
        ref = await self.send({"event": "leave", "topic": topic})
        return await self.assert_reply(ref, timeout=timeout)

    def close(self) -> None:
        """Drop the connection, as a closed browser tab does; ``handle_leave`` runs for
        every joined topic."""
        self.client.lost()

    # -- assertions -----------------------------------------------------------------------

    async def assert_reply(
        self,
        ref: str,
        status: str | None = None,
        response: dict[str, Any] | None = None,
        *,
        timeout: float = ASSERT_TIMEOUT,
    ) -> Reply:
        """Wait for the reply to ``ref``; fail unless it has this ``status`` (``"ok"`` or
        ``"error"``) and ``response``'s keys. Returns the :class:`Reply`."""

        def reply(frame: dict[str, Any]) -> bool:
            return frame.get("event") == "reply" and frame.get("ref") == ref

        frame = await self._expect(reply, timeout, f"no reply to ref {ref}")
        payload = frame["payload"]
        answer = Reply(frame.get("topic"), ref, payload["status"], payload.get("response"))
        if status is not None and answer.status != status:
            raise AssertionError(f"expected a {status} reply, got {answer}")
        if not _matches(answer.response, response):
            raise AssertionError(f"expected a reply matching {response!r}, got {answer}")
        return answer

    def _message(
        self, subject: str, payload: Any, topic: str | None
    ) -> Callable[[dict[str, Any]], bool]:
        def match(frame: dict[str, Any]) -> bool:
            return (
                frame.get("event") == "message"
                and frame.get("subject") == subject
                and (topic is None or frame.get("topic") == topic)
                and _matches(frame.get("payload"), payload)
            )

        return match

    async def assert_broadcast(
        self,
        subject: str,
        payload: Any = None,
        *,
        topic: str | None = None,
        timeout: float = ASSERT_TIMEOUT,
    ) -> dict[str, Any]:
        """Wait for a ``message`` frame with ``subject`` (and ``payload``'s keys, on
        ``topic``) sent to this client; returns the frame (``offset``, ``from``, ...)."""
        match = self._message(subject, payload, topic)
        return await self._expect(match, timeout, f"no {subject!r} message matching {payload!r}")

    #: A channel's ``push(client, ...)`` reaches the client as a ``message`` frame too.
    assert_push = assert_broadcast

    async def refute_broadcast(
        self,
        subject: str,
        payload: Any = None,
        *,
        topic: str | None = None,
        timeout: float = REFUTE_TIMEOUT,
    ) -> None:
        """Fail if a matching ``message`` frame arrives within ``timeout``."""
        try:
            frame = await self._expect(self._message(subject, payload, topic), timeout, "")
        except AssertionError:
            return
        raise AssertionError(f"unexpected {subject!r} message: {frame}")

    async def assert_presence(
        self, topic: str, usernames: set[str], *, timeout: float = ASSERT_TIMEOUT
    ) -> dict[str, list[dict[str, Any]]]:
        """Wait until exactly ``usernames`` are present on ``topic``; returns the presence."""

        def present() -> bool:
            return set(self.presence.get(topic, {})) == set(usernames)

        await self._wait_for(
            present,
            timeout,
            lambda: (
                f"presence on {topic} is {sorted(self.presence.get(topic, {}))}, "
                f"not {sorted(usernames)}"
            ),
        )
        return self.presence[topic]

    async def assert_closed(self, *, timeout: float = ASSERT_TIMEOUT) -> dict[str, Any]:
        """Wait for a ``close`` frame (the server ended a subscription); returns it."""
        return await self._expect(lambda f: f.get("event") == "close", timeout, "no close frame")
