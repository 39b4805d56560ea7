"""Two real kernels, started by the server, share live messages with no URL given.

The kernels come from the server's REST API, so they inherit the
``JUPYTER_CHANNELS_URL`` / ``JUPYTER_CHANNELS_TOKEN`` the extension exported; the
test talks to them with ``jupyter_client`` through their connection files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient

from ..support import SpawnedServer

TIMEOUT = 60


def run(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code`` in the kernel and return its stdout; fail on an error."""
    out: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=collect)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def wait_for_output(kc: BlockingKernelClient, msg_id: str, text: str) -> None:
    """Wait until the running cell ``msg_id`` printed ``text``."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return


def wait_for_reply(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    while True:
        msg = kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


@pytest.fixture
def start_kernel(
    spawned_server: SpawnedServer,
) -> Iterator[Callable[[], BlockingKernelClient]]:
    """``start_kernel()``: a kernel started by the server, and a client ready to talk to it."""
    started: list[tuple[str, BlockingKernelClient]] = []

    def start() -> BlockingKernelClient:
        kernel = spawned_server.rest("POST", "api/kernels", {"name": "python3"})
        kc = BlockingKernelClient(
            connection_file=str(spawned_server.root / "runtime" / f"kernel-{kernel['id']}.json")
        )
        started.append((kernel["id"], kc))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        return kc

    yield start
    for kernel_id, kc in started:
        kc.stop_channels()
        spawned_server.rest("DELETE", f"api/kernels/{kernel_id}")


SUBSCRIBE = """\
import json, time
import jupyter_channels as jc

calls = []
room = jc.join("metrics:run1")
room.on("metric", lambda message: calls.append(
    {"at": time.monotonic(), "offset": message.offset,
     "payload": message.payload, "from": message.sender}))
"""

SLEEP = """\
slept_from = time.monotonic()
print("sleeping", flush=True)
time.sleep(5)
slept_until = time.monotonic()
"""

REPORT = """\
print(json.dumps({"from": slept_from, "until": slept_until, "calls": calls}))
"""

PUBLISH_JOIN = """\
import json, os
import jupyter_channels as jc

room = jc.join("metrics:run1")
print(os.environ["JUPYTER_CHANNELS_URL"])
"""

PUBLISH = """\
offsets = [room.send("metric", {"step": i, "loss": 1 / (i + 1)}) for i in range(100)]
print(json.dumps(offsets))
"""


def test_a_kernel_receives_another_kernels_messages_while_its_main_thread_sleeps(
    spawned_server, start_kernel
):
    publisher = start_kernel()
    subscriber = start_kernel()

    # Neither kernel is given a URL: they found the server through its environment.
    assert run(publisher, PUBLISH_JOIN).strip() == spawned_server.ws_url
    run(subscriber, SUBSCRIBE)

    sleeping = subscriber.execute(SLEEP)
    wait_for_output(subscriber, sleeping, "sleeping")
    offsets = json.loads(run(publisher, PUBLISH))
    assert wait_for_reply(subscriber, sleeping)["content"]["status"] == "ok"
    report = json.loads(run(subscriber, REPORT))

    assert offsets == list(range(1, 101))
    calls = report["calls"]
    assert [call["offset"] for call in calls] == offsets
    assert [call["payload"]["step"] for call in calls] == list(range(100))
    # Delivered by the client's thread while the cell was still in time.sleep(5).
    assert all(report["from"] < call["at"] < report["until"] for call in calls)
    # Stamped by the server: the publisher connected with the kernel token.
    assert {call["from"]["kind"] for call in calls} == {"kernel"}
