"""``%%share``, ``%share`` and ``%channels paste`` in a real kernel against a real server."""

from __future__ import annotations

import base64
import struct
import zlib

from ..support import wait_until

#: A 1x1 PNG, made here so no imaging library is needed.
PNG = (
    b"\x89PNG\r\n\x1a\n"
    + struct.pack("!I", 13) + b"IHDR" + struct.pack("!IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    + struct.pack("!I", zlib.crc32(b"IHDR" + struct.pack("!IIBBBBB", 1, 1, 8, 2, 0, 0, 0)))
    + struct.pack("!I", 15) + b"IDAT" + zlib.compress(b"\x00\xff\x00\x00")[:15]
)  # fmt: skip


def cells(room):
    return [m for m in room.messages if m.subject == "cell"]


def test_share_cell_runs_the_cell_then_shares_its_code_and_outputs(kernel, watcher):
    room = watcher.join("chat:share")

    content, outputs = kernel.run('%%share chat:share\nprint("hello")\n40 + 2')

    assert content["status"] == "ok"
    # The user sees the cell's output as without the magic.
    assert {"type": "stream", "name": "stdout", "text": "hello\n"} in outputs
    (result,) = [o for o in outputs if o["type"] == "execute_result"]
    assert result["data"]["text/plain"] == "42"

    wait_until(lambda: len(cells(room)) == 1)
    (cell,) = cells(room)
    assert cell.sender["kind"] == "browser"  # the kernel used the server token given to it
    payload = cell.payload
    assert payload["source"] == 'print("hello")\n40 + 2'
    assert payload["language"] == "python"
    assert payload["execution_count"] == content["execution_count"]
    assert payload["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
        {
            "output_type": "execute_result",
            "data": {"text/plain": "42"},
            "metadata": {},
            "execution_count": content["execution_count"],
        },
    ]


def test_share_input_n_shares_that_input_and_its_result(kernel, watcher):
    room = watcher.join("chat:share-n")
    content, _ = kernel.run("x = 7\nx * 6")
    n = content["execution_count"]
    kernel.run("y = 'something else'")

    content, _ = kernel.run(f"%share chat:share-n {n}")

    assert content["status"] == "ok"
    wait_until(lambda: len(cells(room)) == 1)
    payload = cells(room)[0].payload
    assert payload["source"] == "x = 7\nx * 6"
    assert payload["execution_count"] == n
    assert payload["outputs"][0]["data"] == {"text/plain": "42"}


def test_share_without_n_shares_the_previous_cell(kernel, watcher):
    room = watcher.join("chat:share-prev")
    content, _ = kernel.run("'the previous one'")

    kernel.run("%share chat:share-prev")

    wait_until(lambda: len(cells(room)) == 1)
    assert cells(room)[0].payload["source"] == "'the previous one'"
    assert cells(room)[0].payload["execution_count"] == content["execution_count"]


def test_an_image_output_is_carried_as_image_png(kernel, watcher):
    room = watcher.join("chat:share-png")
    code = (
        "%%share chat:share-png\n"
        "from IPython.display import Image, display\n"
        f"display(Image(data={PNG!r}))"
    )

    content, outputs = kernel.run(code)

    assert content["status"] == "ok"
    assert any("image/png" in o.get("data", {}) for o in outputs)  # still shown locally
    wait_until(lambda: len(cells(room)) == 1)
    (display,) = cells(room)[0].payload["outputs"]
    assert display["output_type"] == "display_data"
    assert display["data"]["image/png"] == base64.b64encode(PNG).decode()


def test_a_cell_that_raises_is_not_shared(kernel, watcher):
    room = watcher.join("chat:share-fail")
    kernel.run("%%share chat:share-fail\nraise ValueError('no')")
    kernel.run("%%share chat:share-fail\n'after'")

    wait_until(lambda: len(cells(room)) == 1)
    assert cells(room)[0].payload["source"] == "'after'"


def test_paste_puts_the_received_cell_in_a_new_cell_below_without_running_it(kernel, watcher):
    kernel.run("import jupyter_channels as jc; inbox = jc.join('chat:paste')")
    room = watcher.join("chat:paste")
    source = "print('pasted and run')\n1 / 0"
    room.send("cell", {"source": source, "language": "python"})
    room.send("cell", {"source": "newest = True", "language": "python"})
    content, _ = kernel.run("import time\nwhile len(inbox.messages) < 2: time.sleep(0.05)")
    assert content["status"] == "ok"

    content, outputs = kernel.run("%channels paste 2")

    assert content["status"] == "ok"
    (next_input,) = [p for p in content["payload"] if p["source"] == "set_next_input"]
    assert next_input["text"] == source
    assert next_input["replace"] is False
    assert not [o for o in outputs if "pasted and run" in str(o)]  # not executed

    content, _ = kernel.run("%channels paste")
    (next_input,) = [p for p in content["payload"] if p["source"] == "set_next_input"]
    assert next_input["text"] == "newest = True"


def test_paste_with_nothing_received_says_how_to_get_cells(server, tmp_path):
    from jupyter_client.manager import KernelManager

    from .conftest import Kernel

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kernel = Kernel(km)
    try:
        kernel.run("%load_ext jupyter_channels")
        content, outputs = kernel.run("%channels paste")
        assert content["status"] == "ok"
        assert not [p for p in content["payload"] if p["source"] == "set_next_input"]
        (stderr,) = [o for o in outputs if o.get("name") == "stderr"]
        assert "join a topic first" in stderr["text"]
    finally:
        kernel.stop()
