"""Errors of the Python client.

::

    ChannelError              an error reply from the server, or a failure of the client;
    │                         ``code`` is the protocol's error code, ``detail`` the text
    ├── JoinRejected          the channel refused the join (``join_rejected``)
    ├── ReplyTimeout          no reply within the timeout (``timeout``; also a TimeoutError)
    ├── ConnectionLost        the connection dropped before the reply came: the
    │                         request may or may not have taken effect
    └── ServerNotFound        no server to connect to; the message says what was tried

Every wait has a timeout (10 s unless given), so a call either returns,
raises one of these, or raises ``ReplyTimeout``: it never waits forever.

An error whose ``code`` is in :data:`RETRIED` says the server could not answer
now; the client tries a rejoin that got one again later, and gives up on any other.
"""

from __future__ import annotations

from ..constants import ErrorCode

#: Codes of errors that pass: the store or broker is down, a hook or the reply was slow.
RETRIED = frozenset(
    {ErrorCode.UNAVAILABLE.value, ErrorCode.TIMEOUT.value, ErrorCode.RATE_LIMITED.value}
)


class ChannelError(Exception):
    """An error reply, or a failure of the client. ``code`` is an error code of the protocol;
    ``retry_after`` the seconds the server asked to wait before trying again, if it did."""

    def __init__(self, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def retried(self) -> bool:
        """Whether trying again later may succeed (``code`` is in :data:`RETRIED`)."""
        return self.code in RETRIED


class JoinRejected(ChannelError):
    """The channel's ``handle_joined`` refused the join; ``detail`` is its reason."""


class ReplyTimeout(ChannelError, TimeoutError):
    """No reply came within the timeout."""


class ConnectionLost(ChannelError):
    """The connection dropped while waiting; what was sent may or may not have taken effect."""


class ServerNotFound(ChannelError):
    """Discovery found no server; pass ``url=`` (and ``token=``) or set the environment."""


def error_for(code: str, detail: str, retry_after: float | None = None) -> ChannelError:
    """The exception for an error reply (``retry_after`` in seconds)."""
    if code == ErrorCode.JOIN_REJECTED.value:
        return JoinRejected(code, detail, retry_after)
    if code == ErrorCode.TIMEOUT.value:
        return ReplyTimeout(code, detail, retry_after)
    return ChannelError(code, detail, retry_after)
