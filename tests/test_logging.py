"""The package's log lines reach the Jupyter server's log: its format, its ``--log-level``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .support import SpawnedServer, error_reason, spawn, wait_until

# Jupyter's prefix: "[W 2026-01-31 12:00:00.123 jupyter_channels.hub.messages] ".
PREFIX = r"\[{level} \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} jupyter_channels\.[\w.]+\] "
QUEUE_LIMIT = 2048


def logged(level: str, pattern: str) -> re.Pattern[str]:
    return re.compile(PREFIX.format(level=level) + pattern, re.MULTILINE)


SLOW_CONSUMER = logged("I", rf"closing .* over max_queued_bytes={QUEUE_LIMIT}$")
HOOK_FAILED = logged(
    "E",
    r"Failing\.handle_message failed on topic 'boom:log'.*\n"
    r"\s*Traceback \(most recent call last\):\n(?:.*\n)*?"
    r"\s*RuntimeError: the channel is broken$",
)
HOOK_TIMEOUT = logged("W", r"Slow\.handle_message timed out after 1\.0 s on slow:log$")


def start(root: pytest.TempPathFactory, name: str, level: str) -> SpawnedServer:
    path = root.mktemp(name)
    return spawn(
        path,
        path / "history.sqlite",
        server_args=(f"--log-level={level}",),
        hook_timeout=1,
        max_queued_bytes=QUEUE_LIMIT,
    ).start()


@pytest.fixture(scope="module")
def info_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    server = start(tmp_path_factory, "info", "INFO")
    try:
        yield server
    finally:
        server.stop()


def log_of(server: SpawnedServer) -> str:
    return server.log_path.read_text()


def wait_for_line(server: SpawnedServer, line: re.Pattern[str]) -> None:
    try:
        wait_until(lambda: line.search(log_of(server)))
    except AssertionError:
        pytest.fail(f"no line {line.pattern!r} in the server's log:\n{log_of(server)[-3000:]}")


async def make_a_slow_consumer(server: SpawnedServer) -> None:
    """One message bigger than the queue limit: its echo to the sender overflows it."""
    client = await server.connect()
    await client.join("chat_room:log")
    await client.send(
        {"event": "message", "topic": "chat_room:log", "subject": "text",
         "payload": {"text": "x" * QUEUE_LIMIT}, "ref": "big"}
    )  # fmt: skip
    assert await client.closed() == "closed: 4008 slow consumer"


async def refused(server: SpawnedServer, topic: str) -> str:
    """Join ``topic`` and send one message into its channel; the error reply's reason."""
    client = await server.connect()
    await client.join(topic)
    reply = await client.request(
        {"event": "message", "topic": topic, "subject": "text", "payload": {}}
    )
    client.close()
    return error_reason(reply)


async def test_a_slow_consumer_is_logged_at_info_in_jupyters_format(
    info_server: SpawnedServer,
) -> None:
    await make_a_slow_consumer(info_server)
    wait_for_line(info_server, SLOW_CONSUMER)


async def test_a_failing_hook_logs_its_traceback_with_jupyters_prefix(
    info_server: SpawnedServer,
) -> None:
    assert await refused(info_server, "boom:log") == "internal_error"
    wait_for_line(info_server, HOOK_FAILED)


async def test_a_hook_timeout_is_logged_as_a_warning_in_jupyters_format(
    info_server: SpawnedServer,
) -> None:
    assert await refused(info_server, "slow:log") == "timeout"
    wait_for_line(info_server, HOOK_TIMEOUT)


async def test_the_servers_log_level_decides_which_lines_appear(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = start(tmp_path_factory, "warn", "WARN")
    try:
        await make_a_slow_consumer(server)
        assert await refused(server, "slow:log") == "timeout"
        # Both lines come from the same process in this order: once the warning is in
        # the log, the info line would be too.
        wait_for_line(server, HOOK_TIMEOUT)
        assert not re.search(r"over max_queued_bytes", log_of(server))
    finally:
        server.stop()
