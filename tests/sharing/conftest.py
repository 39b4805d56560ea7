"""A spawned server and real kernels that find it through the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

import jupyter_channels as jc

from ..support import SpawnedServer


@pytest.fixture(scope="module")
def server(spawned_server: SpawnedServer) -> SpawnedServer:
    return spawned_server


class Kernel:
    """A real IPython kernel; ``run(code)`` -> (reply content, iopub outputs)."""

    def __init__(self, km: KernelManager) -> None:
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        return reply["content"], outputs

    def ask_widget(
        self, model_id: str, question: dict[str, Any], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Send ``question`` to the widget ``model_id`` as its front end does (a custom
        message on the widget's comm); returns the custom messages it answers with."""
        data = {"method": "custom", "content": question}
        msg = self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        self.kc.shell_channel.send(msg)
        answers: list[dict[str, Any]] = []
        while True:
            event = self.kc.get_iopub_msg(timeout=timeout)
            if event["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if event["msg_type"] == "comm_msg":
                answers.append(event["content"]["data"]["content"])
            elif event["msg_type"] == "status" and event["content"]["execution_state"] == "idle":
                return answers

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@contextmanager
def running_kernel(server: SpawnedServer) -> Iterator[Kernel]:
    """A kernel whose environment points at ``server``, as the extension's kernels have,
    with the magics loaded."""
    km = KernelManager(kernel_name="python3")
    env = {**os.environ, "JUPYTER_CHANNELS_URL": server.ws_url}
    env["JUPYTER_CHANNELS_TOKEN"] = server.token
    km.start_kernel(env=env)
    kernel = Kernel(km)
    try:
        content, _ = kernel.run("%load_ext jupyter_channels")
        assert content["status"] == "ok", content
        yield kernel
    finally:
        kernel.stop()


@pytest.fixture(scope="module")
def kernel(server: SpawnedServer) -> Iterator[Kernel]:
    with running_kernel(server) as kernel:
        yield kernel


@pytest.fixture(scope="module")
def receiver(server: SpawnedServer) -> Iterator[Kernel]:
    """A second kernel, on the receiving end of what ``kernel`` shares."""
    with running_kernel(server) as kernel:
        yield kernel


@pytest.fixture
def watcher(server: SpawnedServer) -> Iterator[jc.Connection]:
    """The test's own client on ``server``."""
    with jc.connect(server.http_url, server.token) as conn:
        yield conn
