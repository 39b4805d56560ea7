"""Who is on a topic, in Phoenix Presence's shapes: grouped by username, one meta per connection."""

from __future__ import annotations

import json
import time

from jupyter_channels.presence import Presence, diff, make_meta


def meta(conn_id: str, name: str = "Alice A.", kind: str = "browser") -> dict:
    return make_meta(conn_id, kind, name, "AA", "#f00", online_at=1_700_000_000_000)


def test_a_meta_has_exactly_the_phoenix_fields_with_phx_ref_the_connection_id():
    assert make_meta("c1", "kernel", "Alice A.", "AA", "#f00", online_at=1_700_000_000_000) == {
        "id": "c1",
        "kind": "kernel",
        "name": "Alice A.",
        "initials": "AA",
        "color": "#f00",
        "online_at": 1_700_000_000_000,
        "phx_ref": "c1",
    }


def test_a_meta_without_online_at_is_stamped_now_in_milliseconds():
    before = int(time.time() * 1000)

    stamped = make_meta("c1", "browser", "Alice", None, None)["online_at"]

    assert isinstance(stamped, int)
    assert before <= stamped <= int(time.time() * 1000)


def test_a_join_returns_the_joins_part_of_the_diff():
    presence = Presence()

    assert presence.join("alice", meta("c1")) == {"alice": {"metas": [meta("c1")]}}


def test_the_state_groups_connections_by_username_with_one_meta_each():
    presence = Presence()
    presence.join("alice", meta("c1"))
    presence.join("bob", meta("c2", "Bob B."))
    presence.join("alice", meta("c3", kind="kernel"))

    assert presence.state() == {
        "alice": {"metas": [meta("c1"), meta("c3", kind="kernel")]},
        "bob": {"metas": [meta("c2", "Bob B.")]},
    }
    assert len(presence) == 3
    assert presence.usernames() == {"alice", "bob"}


def test_a_connection_joining_again_keeps_one_meta():
    presence = Presence()
    presence.join("alice", meta("c1"))

    presence.join("alice", meta("c1", "Alice renamed"))

    assert presence.state() == {"alice": {"metas": [meta("c1", "Alice renamed")]}}
    assert len(presence) == 1


def test_a_leave_returns_the_leaves_part_of_the_diff_with_the_meta_that_joined():
    presence = Presence()
    presence.join("alice", meta("c1"))
    presence.join("alice", meta("c2"))

    assert presence.leave("c1") == {"alice": {"metas": [meta("c1")]}}
    assert presence.state() == {"alice": {"metas": [meta("c2")]}}


def test_the_last_connection_of_a_user_leaving_removes_the_user():
    presence = Presence()
    presence.join("alice", meta("c1"))
    presence.join("bob", meta("c2", "Bob B."))

    presence.leave("c1")

    assert presence.state() == {"bob": {"metas": [meta("c2", "Bob B.")]}}
    assert presence.usernames() == {"bob"}


def test_leaving_a_connection_that_never_joined_is_an_empty_diff():
    presence = Presence()
    presence.join("alice", meta("c1"))

    assert presence.leave("nobody") == {}
    assert len(presence) == 1


def test_an_empty_topic_has_an_empty_state():
    assert Presence().state() == {}
    assert len(Presence()) == 0


def test_a_diff_always_has_joins_and_leaves():
    joins = {"alice": {"metas": [meta("c1")]}}

    assert diff() == {"joins": {}, "leaves": {}}
    assert diff(joins=joins) == {"joins": joins, "leaves": {}}
    assert diff(leaves=joins) == {"joins": {}, "leaves": joins}


def test_state_and_diffs_are_plain_json():
    presence = Presence()
    joins = presence.join("alice", meta("c1"))
    presence.join("bob", meta("c2"))
    leaves = presence.leave("c2")

    for value in (presence.state(), diff(joins=joins), diff(leaves=leaves)):
        assert json.loads(json.dumps(value)) == value
