"""What a live cell keeps of its outputs, and what a shared output may carry: plain code,
no kernel."""

from __future__ import annotations

import base64

from jupyter_channels import sharing
from jupyter_channels.live import LiveOutputs, overwrite_line


def test_a_carriage_return_overwrites_its_line_as_a_terminal_does():
    assert overwrite_line("abc\rde") == "dec"
    assert overwrite_line("10%\r20%\r30%") == "30%"
    assert overwrite_line("50%\r") == "50%\r"  # the next write overwrites it
    outputs = LiveOutputs()
    for text in ("10%\r", "20%\r", "30%", "\r\n", "done\n", "a\r", "\n"):
        outputs.stream("stdout", text)
    assert outputs.snapshot()[0] == [sharing.stream("stdout", "30%\ndone\na\n")]


def test_stream_text_of_one_name_is_one_output_until_another_comes():
    outputs = LiveOutputs()
    outputs.stream("stdout", "a\n")
    outputs.stream("stdout", "b\n")
    outputs.stream("stderr", "oops\n")
    outputs.stream("stdout", "c\n")

    shown, _ = outputs.snapshot()

    assert shown == [
        sharing.stream("stdout", "a\nb\n"),
        sharing.stream("stderr", "oops\n"),
        sharing.stream("stdout", "c\n"),
    ]


def test_a_progress_line_shows_its_latest_state_without_the_pending_return():
    outputs = LiveOutputs()
    outputs.stream("stderr", "\r1/3")
    outputs.stream("stderr", "\r2/3")
    assert outputs.snapshot()[0] == [sharing.stream("stderr", "2/3")]
    outputs.stream("stderr", "\r3/3\n")
    assert outputs.snapshot()[0] == [sharing.stream("stderr", "3/3\n")]


def test_clear_output_with_wait_clears_at_the_next_output_only():
    outputs = LiveOutputs()
    outputs.stream("stdout", "old\n")
    outputs.clear(wait=True)
    assert outputs.snapshot()[0] == [sharing.stream("stdout", "old\n")]
    outputs.display({"text/plain": "new"}, None, update=False)
    assert outputs.snapshot()[0] == [sharing.display_data({"text/plain": "new"})]
    outputs.clear(wait=False)
    assert outputs.snapshot()[0] == []


def test_update_display_replaces_the_displays_with_its_id_and_nothing_else():
    outputs = LiveOutputs()
    outputs.display({"text/plain": "0%"}, "bar", update=False)
    outputs.stream("stdout", "working\n")
    outputs.clear(wait=True)
    outputs.display({"text/plain": "50%"}, "bar", update=True)  # no clear: not a new output
    outputs.display({"text/plain": "elsewhere"}, "other-cell", update=True)

    assert outputs.snapshot()[0] == [
        sharing.display_data({"text/plain": "50%"}),
        sharing.stream("stdout", "working\n"),
    ]


def test_outputs_whose_text_alone_is_over_the_cap_are_not_built():
    outputs = LiveOutputs()
    outputs.stream("stdout", "x" * sharing.MAX_CELL_BYTES + "\n")

    shown, size = outputs.snapshot()

    assert shown is None
    assert size == sharing.MAX_CELL_BYTES + 1
    outputs.clear(wait=False)
    outputs.stream("stdout", "small\n")
    assert outputs.snapshot() == ([sharing.stream("stdout", "small\n")], 6)


def test_a_progress_line_redrawn_many_times_stays_one_short_line():
    outputs = LiveOutputs()
    bar = "#" * 1000
    for i in range(2000):  # 2 MB written in all
        outputs.stream("stderr", f"\r{bar} {i:4d}")

    shown, size = outputs.snapshot()

    assert shown == [sharing.stream("stderr", f"{bar} 1999")]
    assert size == 1005


def test_shared_data_keeps_the_rich_types_and_checks_images():
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0 not really").decode()
    data = {
        "text/plain": "t",
        "text/html": ["<b>", "x</b>"],  # nbformat's list of lines
        "image/svg+xml": "<svg/>",
        "text/markdown": "*m*",
        "text/latex": "$x$",
        "image/jpeg": jpeg[:10] + "\n" + jpeg[10:],
        "image/png": "not base64!",
        "application/json": {"a": 1},
        "application/javascript": "alert(1)",
    }

    assert sharing.shared_data(data) == {
        "text/plain": "t",
        "text/html": "<b>x</b>",
        "image/svg+xml": "<svg/>",
        "text/markdown": "*m*",
        "text/latex": "$x$",
        "image/jpeg": jpeg,
    }
    assert sharing.shared_data({"text/html": {"not": "a string"}}) == {}


def test_a_cell_over_the_cap_is_shared_without_its_outputs_and_says_why():
    big = sharing.stream("stdout", "é" * (sharing.MAX_CELL_BYTES // 2))

    payload = sharing.cell_payload("print(s)", outputs=[big])

    assert payload["outputs"] == []
    size = len(sharing.dumps([big]).encode())
    assert payload["outputs_note"] == f"outputs too large, not shared ({size} bytes)"
    small = sharing.cell_payload("print(s)", outputs=[sharing.stream("stdout", "é")])
    assert "outputs_note" not in small


def test_a_failing_send_costs_updates_never_the_final_attempt():
    from jupyter_channels.client.errors import ChannelError
    from jupyter_channels.live import LiveSender

    sent: list[tuple[str, bool]] = []

    def send(payload, ephemeral):
        sent.append((payload["status"], ephemeral))
        if ephemeral:
            raise ChannelError("rate_limited", "slow down")

    outputs = LiveOutputs()
    sender = LiveSender(send, outputs, "print(1)")
    sender.start()
    outputs.stream("stdout", "1\n")

    assert sender.finish("ok", wait=30)

    assert sent[0] == ("running", True)
    assert sent[-1] == ("ok", False)
    assert sender.failure == "ChannelError: rate_limited: slow down"
    assert sender.updates == 0


def test_every_frame_of_a_run_has_its_id_and_the_final_one_every_output():
    from jupyter_channels.live import LiveSender

    payloads: list[dict] = []
    outputs = LiveOutputs()
    sender = LiveSender(lambda payload, ephemeral: payloads.append(payload), outputs, "x")
    sender.start()
    for i in range(100):
        outputs.stream("stdout", f"{i}\n")

    assert sender.finish("ok", wait=30)

    assert {p["id"] for p in payloads} == {sender.id}
    assert [p["status"] for p in payloads][-1] == "ok"
    assert {p["status"] for p in payloads[:-1]} == {"running"}
    assert payloads[-1]["outputs"] == [
        sharing.stream("stdout", "".join(f"{i}\n" for i in range(100)))
    ]
