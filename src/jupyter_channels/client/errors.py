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
"""

from __future__ import annotations

from ..constants import ErrorCode


class ChannelError(Exception):
    """An error reply, or a failure of the client. ``code`` is an error code of the protocol."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class JoinRejected(ChannelError):
    """The channel's ``handle_joined`` refused the join; ``detail`` is its reason."""


class ReplyTimeout(ChannelError, TimeoutError):
    """No reply came within the timeout."""


class ConnectionLost(ChannelError):
    """The connection dropped while waiting; what was sent may or may not have taken effect."""


class ServerNotFound(ChannelError):
    """Discovery found no server; pass ``url=`` (and ``token=``) or set the environment."""


def error_for(code: str, detail: str) -> ChannelError:
    """The exception for an error reply."""
    if code == ErrorCode.JOIN_REJECTED.value:
        return JoinRejected(code, detail)
    if code == ErrorCode.TIMEOUT.value:
        return ReplyTimeout(code, detail)
    return ChannelError(code, detail)
