"""Shared cells carry their code as typed, never as IPython rewrote it to run it
(``%time x`` becomes ``get_ipython().run_line_magic(...)``), and input numbers stay
the cells' numbers after a ``%channels paste``, which IPython numbers but leaves out
of ``In``."""

from __future__ import annotations

from ..support import wait_until

#: A cell whose every line IPython rewrites before running it.
MAGIC_CELL = "%time x = 1\n!echo typed"


def cells(room):
    return [m for m in room.messages if m.subject == "cell"]


def test_share_n_sends_a_cell_with_magics_as_it_was_typed(kernel, watcher):
    room = watcher.join("typed:share-n")
    content, _ = kernel.run(MAGIC_CELL)
    n = content["execution_count"]

    kernel.run(f"%share typed:share-n {n}")

    wait_until(lambda: len(cells(room)) == 1)
    assert cells(room)[0].payload["source"] == MAGIC_CELL
    assert cells(room)[0].payload["execution_count"] == n


def test_a_cell_shares_the_same_code_through_the_cell_magic_and_by_its_number(kernel, watcher):
    room = watcher.join("typed:twice")
    content, _ = kernel.run("%%share typed:twice\n" + MAGIC_CELL)

    kernel.run(f"%share typed:twice {content['execution_count']}")

    wait_until(lambda: len(cells(room)) == 2)
    assert [cell.payload["source"] for cell in cells(room)] == [MAGIC_CELL, MAGIC_CELL]


def test_after_a_paste_share_picks_the_cells_by_their_own_numbers(kernel, watcher):
    room = watcher.join("typed:after")
    content, _ = kernel.run("before = 1")
    before = content["execution_count"]
    kernel.run("%channels paste")

    kernel.run("%share typed:after")  # the previous cell: the paste line is skipped
    content, _ = kernel.run("after = 2")
    after = content["execution_count"]
    kernel.run(f"%share typed:after {after}")

    wait_until(lambda: len(cells(room)) == 2)
    shared = [(cell.payload["source"], cell.payload["execution_count"]) for cell in cells(room)]
    assert shared == [("before = 1", before), ("after = 2", after)]


def test_the_widget_lists_and_shares_cells_as_typed_by_their_numbers_after_a_paste(kernel, watcher):
    room = watcher.join("typed:widget")
    _, outputs = kernel.run(
        "from jupyter_channels import ChannelWidget\n"
        "w = ChannelWidget('typed:widget')\n"
        "print(w.model_id)"
    )
    (model_id,) = [o["text"].strip() for o in outputs if o.get("name") == "stdout"]
    kernel.run("%channels paste")
    content, _ = kernel.run(MAGIC_CELL)
    n = content["execution_count"]

    (offered,) = kernel.ask_widget(model_id, {"kind": "inputs"})
    assert offered["inputs"][-1] == {"n": n, "source": MAGIC_CELL}
    assert kernel.ask_widget(model_id, {"kind": "share", "n": n}) == [{"kind": "share", "n": n}]

    wait_until(lambda: len(cells(room)) == 1)
    assert cells(room)[0].payload["source"] == MAGIC_CELL
    assert cells(room)[0].payload["execution_count"] == n


def test_share_cell_without_a_source_shares_the_previous_cell_as_typed(kernel, watcher):
    room = watcher.join("typed:share-cell")
    kernel.run("from jupyter_channels import ChannelWidget\nw = ChannelWidget('typed:share-cell')")
    content, _ = kernel.run(MAGIC_CELL)

    kernel.run("w.share_cell()")

    wait_until(lambda: len(cells(room)) == 1)
    assert cells(room)[0].payload["source"] == MAGIC_CELL
    assert cells(room)[0].payload["execution_count"] == content["execution_count"]


def test_the_receiver_pastes_exactly_the_typed_source(kernel, receiver):
    receiver.run("import jupyter_channels as jc\ninbox = jc.join('typed:paste')")
    content, _ = kernel.run(MAGIC_CELL)
    kernel.run(f"%share typed:paste {content['execution_count']}")
    waited, _ = receiver.run("import time\nwhile not inbox.messages: time.sleep(0.05)")
    assert waited["status"] == "ok"

    content, _ = receiver.run("%channels paste")

    (next_input,) = [p for p in content["payload"] if p["source"] == "set_next_input"]
    assert next_input["text"] == MAGIC_CELL
