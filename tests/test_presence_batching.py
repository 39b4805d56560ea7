"""Batched presence: a topic's joins and leaves within one ``presence_interval`` reach its
members as one ``presence_diff``, in Phoenix's shape, on every host and broker.

The interval is long here so that what a test does between two diffs falls in one interval.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from .channels_fixture import as_user
from .support import config

pytestmark = pytest.mark.on_every_host

TOPIC = "chat:classroom"
#: Longer than anything a test does between two diffs; never waited for in full by a
#: passing test except for the diffs it reads.
INTERVAL = 3.0
#: A diff is due within one interval of the change that starts it.
DIFF_DEADLINE = 3 * INTERVAL


def sync_state(state: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(state)


def sync_diff(state: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """Phoenix Presence's ``syncDiff``: joins (replacing metas of the same ``phx_ref``),
    then leaves."""
    state = copy.deepcopy(state)
    for key, joined in diff["joins"].items():
        refs = {m["phx_ref"] for m in joined["metas"]}
        kept = [m for m in state.get(key, {"metas": []})["metas"] if m["phx_ref"] not in refs]
        state[key] = {"metas": kept + joined["metas"]}
    for key, left in diff["leaves"].items():
        if key not in state:
            continue
        refs = {m["phx_ref"] for m in left["metas"]}
        metas = [m for m in state[key]["metas"] if m["phx_ref"] not in refs]
        if metas:
            state[key] = {"metas": metas}
        else:
            del state[key]
    return state


def refs(state: dict[str, Any]) -> dict[str, list[str]]:
    return {user: [m["phx_ref"] for m in entry["metas"]] for user, entry in state.items()}


async def join(client, user: str) -> tuple[str, dict[str, Any]]:
    """Join ``TOPIC``; this connection's id and the presence_state it was sent."""
    reply = await client.request({"event": "join", "topic": TOPIC})
    assert reply["payload"]["status"] == "ok", reply
    state = (await client.expect("presence_state", topic=TOPIC))["payload"]
    return state[user]["metas"][-1]["phx_ref"], state


async def leave(client) -> None:
    reply = await client.request({"event": "leave", "topic": TOPIC})
    assert reply["payload"]["status"] == "ok", reply


@config(presence_interval=INTERVAL)
async def test_joins_and_leaves_of_one_interval_are_one_diff_in_order_and_a_come_and_go_cancels(
    channels_ws,
):
    ada = await channels_ws()
    ada_id, state = await join(ada, "ada")
    assert refs(state) == {"ada": [ada_id]}  # a quiet topic: the joiner is listed at once
    grace1 = await channels_ws(**as_user("grace"))
    g1, state = await join(grace1, "grace")
    assert refs(state) == {"ada": [ada_id], "grace": [g1]}
    first = await ada.expect("presence_diff", DIFF_DEADLINE, topic=TOPIC)
    assert refs(first["payload"]["joins"]) == {"grace": [g1]}
    assert first["payload"]["leaves"] == {}

    # Within the next interval: two joins, a leave, and a member who comes and goes.
    alan1 = await channels_ws(**as_user("alan"))
    a1, _ = await join(alan1, "alan")
    grace2 = await channels_ws(**as_user("grace"))
    g2, _ = await join(grace2, "grace")
    await leave(grace1)
    alan2 = await channels_ws(**as_user("alan"))
    a2, _ = await join(alan2, "alan")
    await leave(alan2)
    alan3 = await channels_ws(**as_user("alan"))
    a3, _ = await join(alan3, "alan")

    batched = await ada.expect("presence_diff", DIFF_DEADLINE, topic=TOPIC)
    payload = batched["payload"]
    assert list(payload["joins"]) == ["alan", "grace"]  # in the order they first joined
    assert refs(payload["joins"]) == {"alan": [a1, a3], "grace": [g2]}
    assert refs(payload["leaves"]) == {"grace": [g1]}
    assert a2 not in str(payload)
    await ada.silent()


@config(presence_interval=INTERVAL)
async def test_a_joiners_presence_state_and_the_diffs_after_it_give_the_members(
    channels_ws, channels_fetch
):
    ada = await channels_ws()
    ada_id, _ = await join(ada, "ada")
    grace1 = await channels_ws(**as_user("grace"))
    g1, _ = await join(grace1, "grace")
    await ada.expect("presence_diff", DIFF_DEADLINE, topic=TOPIC)

    alan = await channels_ws(**as_user("alan"))
    a1, _ = await join(alan, "alan")
    await leave(grace1)
    late = await channels_ws()  # a second connection of ada's, within the same interval
    late_id, state = await join(late, "ada")
    other = await channels_ws(**as_user("grace"))
    g2, other_state = await join(other, "grace")
    # Joiners of one interval are sent the members as of the last diff, and themselves.
    assert refs(state) == {"ada": [ada_id, late_id], "grace": [g1]}
    assert refs(other_state) == {"ada": [ada_id], "grace": [g1, g2]}

    known = sync_state(state)
    diff = await late.expect("presence_diff", DIFF_DEADLINE, topic=TOPIC)
    known = sync_diff(known, diff["payload"])
    members = {"ada": [ada_id, late_id], "alan": [a1], "grace": [g2]}
    assert {user: sorted(r) for user, r in refs(known).items()} == {
        user: sorted(r) for user, r in members.items()
    }
    assert refs(sync_diff(sync_state(other_state), diff["payload"])) == refs(known)
    response = await channels_fetch("topics", TOPIC, "presence")

    listed = json.loads(response.body)
    assert {user: sorted(r) for user, r in refs(listed).items()} == {
        user: sorted(r) for user, r in members.items()
    }


@config(presence_interval=0)
async def test_with_no_interval_every_join_and_leave_is_its_own_diff(channels_ws):
    ada = await channels_ws()
    await join(ada, "ada")
    grace = await channels_ws(**as_user("grace"))
    g1, _ = await join(grace, "grace")
    alan = await channels_ws(**as_user("alan"))
    a1, _ = await join(alan, "alan")
    await leave(grace)

    diffs = [(await ada.expect("presence_diff", topic=TOPIC))["payload"] for _ in range(3)]

    assert [refs(d["joins"]) for d in diffs] == [{"grace": [g1]}, {"alan": [a1]}, {}]
    assert refs(diffs[2]["leaves"]) == {"grace": [g1]}
