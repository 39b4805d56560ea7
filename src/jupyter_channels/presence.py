"""Who is on a topic, in Phoenix Presence's shapes.

State: ``{username: {"metas": [meta, ...]}}`` with one meta per connection;
a diff: ``{"joins": state, "leaves": state}``. Phoenix's JS ``Presence``
helper consumes both unchanged.
"""

from __future__ import annotations

import time
from typing import Any

Meta = dict[str, Any]
State = dict[str, dict[str, list[Meta]]]


def make_meta(
    conn_id: str,
    kind: str,
    name: str,
    initials: str | None,
    color: str | None,
    online_at: int | None = None,
) -> Meta:
    """One connection's meta; ``phx_ref`` is the connection id."""
    return {
        "id": conn_id,
        "kind": kind,
        "name": name,
        "initials": initials,
        "color": color,
        "online_at": int(time.time() * 1000) if online_at is None else online_at,
        "phx_ref": conn_id,
    }


class Presence:
    """The members of one topic."""

    def __init__(self) -> None:
        self._members: dict[str, tuple[str, Meta]] = {}

    def __len__(self) -> int:
        return len(self._members)

    def join(self, username: str, meta: Meta) -> State:
        """Add a connection; returns the ``joins`` part of the diff."""
        self._members[meta["phx_ref"]] = (username, meta)
        return {username: {"metas": [meta]}}

    def leave(self, conn_id: str) -> State:
        """Remove a connection; returns the ``leaves`` part of the diff (empty if absent)."""
        entry = self._members.pop(conn_id, None)
        if entry is None:
            return {}
        username, meta = entry
        return {username: {"metas": [meta]}}

    def state(self) -> State:
        """Every member, grouped by username."""
        state: State = {}
        for username, meta in self._members.values():
            state.setdefault(username, {"metas": []})["metas"].append(meta)
        return state

    def usernames(self) -> set[str]:
        return {username for username, _ in self._members.values()}


def diff(joins: State | None = None, leaves: State | None = None) -> dict[str, State]:
    return {"joins": joins or {}, "leaves": leaves or {}}
