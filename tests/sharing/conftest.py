"""A spawned server and a real kernel that finds it through the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
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

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(server: SpawnedServer) -> Iterator[Kernel]:
    """A kernel whose environment points at ``server``, as the extension's kernels have."""
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


@pytest.fixture
def watcher(server: SpawnedServer) -> Iterator[jc.Connection]:
    """The test's own client on ``server``."""
    with jc.connect(server.http_url, server.token) as conn:
        yield conn
