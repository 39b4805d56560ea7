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
#: One connection: its username and meta.
Entry = tuple[str, Meta]


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
        self._members: dict[str, Entry] = {}

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

    def get(self, conn_id: str) -> Entry | None:
        """The connection's ``(username, meta)``, if it is a member."""
        return self._members.get(conn_id)

    def state_before(self, before: dict[str, Entry | None]) -> State:
        """The state as it was when each connection of ``before`` was as given there
        (``None``: not a member); the others as they are now."""
        state: State = {}
        for conn_id, entry in self._members.items():
            if conn_id in before:
                continue
            username, meta = entry
            state.setdefault(username, {"metas": []})["metas"].append(meta)
        for old in before.values():
            if old is not None:
                username, meta = old
                state.setdefault(username, {"metas": []})["metas"].append(meta)
        return state

    def changes_since(self, before: dict[str, Entry | None]) -> tuple[State, State]:
        """``(joins, leaves)`` taking the members of ``before`` to what they are now, in the
        order of ``before``: a connection that came and went is in neither, one whose meta
        changed is in ``joins`` only (a join replaces the meta of the same ``phx_ref``)."""
        joins: State = {}
        leaves: State = {}
        for conn_id, old in before.items():
            now = self._members.get(conn_id)
            if now is None:
                if old is not None:
                    leaves.setdefault(old[0], {"metas": []})["metas"].append(old[1])
            elif old is None or old[1] is not now[1]:
                joins.setdefault(now[0], {"metas": []})["metas"].append(now[1])
                if old is not None and old[0] != now[0]:
                    leaves.setdefault(old[0], {"metas": []})["metas"].append(old[1])
        return joins, leaves


def diff(joins: State | None = None, leaves: State | None = None) -> dict[str, State]:
    return {"joins": joins or {}, "leaves": leaves or {}}
