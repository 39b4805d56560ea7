"""``%%share --live`` in a real kernel against a real server: the cell is shared as it
runs (ephemeral frames), then its final state is the one stored message."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator

import pytest
from jupyter_client.manager import KernelManager

import jupyter_channels as jc
from jupyter_channels.message import Message
from jupyter_channels.sharing import strip_ansi

from ..support import wait_until
from .conftest import Kernel

LINES_THEN_TABLE = """\
%%share --live class:live
import time
import pandas as pd

for i in range(10):
    print("line", i)
    time.sleep(0.2)
pd.DataFrame({"name": ["ada", "grace"], "score": [3, 5]})
"""


class Frames:
    """Every ``cell`` frame a subscription receives, ephemeral ones included."""

    def __init__(self, room: jc.Subscription) -> None:
        self.all: list[Message] = []
        room.on("cell", self.all.append)

    @property
    def running(self) -> list[Message]:
        return [m for m in self.all if m.payload.get("status") == "running"]

    @property
    def final(self) -> list[Message]:
        return [m for m in self.all if m.payload.get("status") in ("ok", "error")]

    def wait_final(self) -> Message:
        wait_until(lambda: len(self.final) == 1)
        return self.final[0]


def states(frames: list[Message]) -> list[str]:
    """The distinct output lists, in the order they came."""
    seen: list[str] = []
    for frame in frames:
        state = json.dumps(frame.payload["outputs"], sort_keys=True)
        if state not in seen:
            seen.append(state)
    return seen


def test_a_live_cell_streams_its_lines_as_they_come_then_stores_its_final_state(
    server, kernel, watcher
):
    room = watcher.join("class:live")
    frames = Frames(room)

    content, outputs = kernel.run(LINES_THEN_TABLE)

    assert content["status"] == "ok"
    # The sender's notebook shows the cell as without the magic.
    printed = "".join(o["text"] for o in outputs if o["type"] == "stream")
    assert printed == "".join(f"line {i}\n" for i in range(10))
    (result,) = [o for o in outputs if o["type"] == "execute_result"]
    assert "<table" in result["data"]["text/html"]

    final = frames.wait_final()
    running = frames.running
    share_id = final.payload["id"]
    assert all(m.ephemeral and m.offset is None for m in running)
    assert {m.payload["id"] for m in running} == {share_id}
    # Shared when it starts: its source, running, no outputs yet.
    first = running[0].payload
    assert first["source"] == LINES_THEN_TABLE.split("\n", 1)[1].rstrip("\n")
    assert first["outputs"] == []
    # Then the lines as they appear: several distinct states, each the text so far.
    assert len(states(running)) >= 5
    for frame in running:
        (stream,) = frame.payload["outputs"] or [{"text": ""}]
        assert printed.startswith(stream["text"])
    # The end: one stored message with every output, the table as HTML.
    assert final.offset is not None
    assert not final.ephemeral
    assert final.payload["status"] == "ok"
    assert final.payload["execution_count"] == content["execution_count"]
    stream, table = final.payload["outputs"]
    assert stream == {"output_type": "stream", "name": "stdout", "text": printed}
    assert table["output_type"] == "execute_result"
    assert "<table" in table["data"]["text/html"]
    assert "grace" in table["data"]["text/plain"]
    assert frames.all[-1] is final  # nothing running after the end
    assert [m.offset for m in room.messages if m.subject == "cell"] == [final.offset]

    # A late joiner gets only the final state.
    with jc.connect(server.http_url, server.token) as late:
        history = late.join("class:live", history=50).messages
    assert [m.payload for m in history if m.subject == "cell"] == [final.payload]


def test_a_progress_bar_cleared_with_wait_is_one_output_replaced(kernel, watcher):
    frames = Frames(watcher.join("class:progress"))
    code = (
        "%%share --live class:progress\n"
        "import time\n"
        "from IPython.display import clear_output\n"
        "for i in range(11):\n"
        "    clear_output(wait=True)\n"
        "    print(f'{i * 10}% done')\n"
        "    time.sleep(0.05)\n"
    )

    content, _ = kernel.run(code)

    assert content["status"] == "ok"
    final = frames.wait_final()
    assert final.payload["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "100% done\n"}
    ]
    for frame in frames.running:
        # Never two progress lines: one output, replaced.
        outputs = frame.payload["outputs"]
        assert len(outputs) <= 1
        for output in outputs:
            assert re.fullmatch(r"\d+% done\n", output["text"]), output


def test_carriage_returns_overwrite_their_line_and_update_display_replaces_a_display(
    kernel, watcher
):
    frames = Frames(watcher.join("class:bars"))
    code = (
        "%%share --live class:bars\n"
        "import sys\n"
        "from IPython.display import display\n"
        "handle = display('step 0', display_id=True)\n"
        "for i in range(1, 6):\n"
        "    print(f'\\rdownloading {i}/5', end='', file=sys.stderr)\n"
        "    handle.update(f'step {i}')\n"
        "print(file=sys.stderr)\n"
        "print('done')\n"
    )

    content, _ = kernel.run(code)

    assert content["status"] == "ok"
    final = frames.wait_final()
    assert final.payload["outputs"] == [
        {"output_type": "display_data", "data": {"text/plain": "'step 5'"}, "metadata": {}},
        {"output_type": "stream", "name": "stderr", "text": "downloading 5/5\n"},
        {"output_type": "stream", "name": "stdout", "text": "done\n"},
    ]


def test_an_error_ends_the_live_cell_with_its_traceback_and_still_fails_the_cell(kernel, watcher):
    frames = Frames(watcher.join("class:error"))
    code = (
        "%%share --live class:error\n"
        "def check(x):\n"
        "    raise ValueError(f'bad value: {x}')\n"
        "print('checking')\n"
        "check(42)\n"
    )

    content, outputs = kernel.run(code)

    # The sender's notebook: the cell failed, with its traceback shown once, as usual.
    assert content["status"] == "error"
    assert (content["ename"], content["evalue"]) == ("ValueError", "bad value: 42")
    (shown,) = [o for o in outputs if o["type"] == "error"]
    shown_text = strip_ansi("\n".join(shown["traceback"]))
    assert "check(42)" in shown_text
    assert "run_live" not in shown_text

    final = frames.wait_final()
    assert final.payload["status"] == "error"
    assert final.offset is not None
    stream, error = final.payload["outputs"]
    assert stream == {"output_type": "stream", "name": "stdout", "text": "checking\n"}
    assert (error["output_type"], error["ename"], error["evalue"]) == (
        "error",
        "ValueError",
        "bad value: 42",
    )
    text = "\n".join(error["traceback"])
    assert "\x1b" not in text
    assert all("\n" not in line for line in error["traceback"])
    assert "check(42)" in text
    assert "raise ValueError(f'bad value: {x}')" in text


def test_a_tight_loop_of_prints_sends_at_most_ten_updates_a_second_and_ends_with_every_line(
    kernel, watcher
):
    frames = Frames(watcher.join("class:flood"))
    code = (
        "%%share --live class:flood\n"
        "import time\n"
        "for i in range(1000):\n"
        "    print('line', i)\n"
        "    time.sleep(0.001)\n"
    )

    started = time.monotonic()
    content, _ = kernel.run(code)
    duration = time.monotonic() - started

    assert content["status"] == "ok"
    final = frames.wait_final()
    # One update when the cell starts, then at most one each 0.1 s.
    assert 2 <= len(frames.running) <= 1 + duration / 0.1
    ((stream,),) = [final.payload["outputs"]]
    assert stream["text"] == "".join(f"line {i}\n" for i in range(1000))


RICH = """\
import io
from IPython.display import HTML, SVG, Image, Latex, Markdown, display
from PIL import Image as Picture
jpeg = io.BytesIO()
Picture.new("RGB", (2, 2), "red").save(jpeg, "JPEG")
display(HTML("<b>bold</b>"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'))
display(Image(data=jpeg.getvalue(), format="jpeg"))
display(Markdown("*hi* $x^2$"))
display(Latex(r"$\\frac{1}{2}$"))
display({"application/json": {"a": 1}, "text/plain": "as json"}, raw=True)
"""


@pytest.mark.parametrize("live", ["--live ", ""], ids=["live", "after"])
def test_rich_outputs_arrive_with_their_types(kernel, watcher, live):
    topic = f"class:rich-{'live' if live else 'after'}"
    frames = Frames(watcher.join(topic))

    content, _ = kernel.run(f"%%share {live}{topic}\n{RICH}")

    assert content["status"] == "ok"
    final = frames.wait_final() if live else (wait_until(lambda: frames.all) or frames.all[0])
    kinds = [sorted(o["data"]) for o in final.payload["outputs"]]
    assert kinds == [
        ["text/html", "text/plain"],
        ["image/svg+xml", "text/plain"],
        ["image/jpeg", "text/plain"],
        ["text/markdown", "text/plain"],
        ["text/latex", "text/plain"],
        ["text/plain"],  # a type not shared falls back to text/plain
    ]
    html, svg, jpeg, markdown, latex, json_ = (o["data"] for o in final.payload["outputs"])
    assert html["text/html"] == "<b>bold</b>"
    assert "<circle" in svg["image/svg+xml"]
    assert jpeg["image/jpeg"].startswith("/9j/")  # base64 of a JPEG's first bytes
    assert markdown["text/markdown"] == "*hi* $x^2$"
    assert latex["text/latex"] == "$\\frac{1}{2}$"
    assert json_["text/plain"] == "as json"


@pytest.mark.parametrize("live", ["--live ", ""], ids=["live", "after"])
def test_outputs_over_the_size_cap_are_left_out_with_a_note(kernel, watcher, live):
    topic = f"class:big-{'live' if live else 'after'}"
    frames = Frames(watcher.join(topic))

    content, outputs = kernel.run(f"%%share {live}{topic}\nprint('x' * 1_100_000)\n'small'")

    assert content["status"] == "ok"
    assert sum(len(o.get("text", "")) for o in outputs) == 1_100_001  # still shown here
    final = frames.wait_final() if live else (wait_until(lambda: frames.all) or frames.all[0])
    assert final.payload["outputs"] == []
    note = final.payload["outputs_note"]
    size = int(re.fullmatch(r"outputs too large, not shared \((\d+) bytes\)", note)[1])
    assert size > 1_100_000
    assert final.payload["source"] == "print('x' * 1_100_000)\n'small'"


@pytest.fixture
def kernel_without_server(tmp_path) -> Iterator[Kernel]:
    """A kernel pointed at a port nobody listens on."""
    km = KernelManager(kernel_name="python3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_CHANNELS_")}
    env["JUPYTER_CHANNELS_URL"] = "ws://127.0.0.1:9/api/channels"
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path)
    km.start_kernel(env=env)
    kernel = Kernel(km)
    try:
        kernel.run("%load_ext jupyter_channels")
        yield kernel
    finally:
        kernel.stop()


def test_a_live_cell_without_a_server_still_runs_and_says_it_was_not_shared(
    kernel_without_server,
):
    content, outputs = kernel_without_server.run(
        "%%share --live class:nowhere\nprint('ran')\n6 * 7"
    )

    assert content["status"] == "ok"
    texts = [(o.get("name"), o.get("text")) for o in outputs if o["type"] == "stream"]
    assert ("stdout", "ran\n") in texts
    (warning,) = [text for name, text in texts if name == "stderr"]
    assert warning.startswith("live share to class:nowhere: not shared")
    (result,) = [o for o in outputs if o["type"] == "execute_result"]
    assert result["data"]["text/plain"] == "42"


def test_share_live_needs_a_cell_and_one_topic(kernel):
    for line in ("%share --live class:x", "%%share --live\n1", "%%share --live a b\n1"):
        content, outputs = kernel.run(line)
        assert content["status"] == "ok"
        assert any("usage: %%share [--live] TOPIC" in o.get("text", "") for o in outputs)


def test_an_interrupted_live_cell_ends_with_keyboard_interrupt(kernel, watcher):
    frames = Frames(watcher.join("class:interrupt"))
    msg_id = kernel.kc.execute(
        "%%share --live class:interrupt\nimport time\nprint('started', flush=True)\ntime.sleep(120)"
    )
    wait_until(lambda: any(m.payload["outputs"] for m in frames.running))

    kernel.km.interrupt_kernel()

    reply = kernel.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.kc.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    final = frames.wait_final()
    assert final.payload["status"] == "error"
    stream, error = final.payload["outputs"]
    assert stream["text"] == "started\n"
    assert error["ename"] == "KeyboardInterrupt"


def test_a_live_cell_that_does_not_parse_ends_with_its_syntax_error(kernel, watcher):
    frames = Frames(watcher.join("class:syntax"))

    content, outputs = kernel.run("%%share --live class:syntax\nprint('never'\n")

    assert content["status"] == "error"
    assert content["ename"] == "SyntaxError"
    assert len([o for o in outputs if o["type"] == "error"]) == 1
    final = frames.wait_final()
    assert final.payload["status"] == "error"
    (error,) = final.payload["outputs"]
    assert error["ename"] == "SyntaxError"
    assert "print('never'" in "\n".join(error["traceback"])
