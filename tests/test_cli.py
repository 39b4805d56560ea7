"""``jupyter channels``: generate, topics, send, listen, who, and its errors, against a
real server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import jupyter_channels as jc

from .client.conftest import DISCOVERY_ENV
from .runtime_files import stale_server_file
from .support import SpawnedServer, free_port, stop_process, wait_until

CLI = [sys.executable, "-m", "jupyter_channels.cli"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def server(spawned_server: SpawnedServer) -> SpawnedServer:
    return spawned_server


def at(server: SpawnedServer) -> list[str]:
    return ["--url", server.http_url, "--token", server.token]


def test_the_console_script_is_jupyter_channels():
    out = subprocess.run(
        ["jupyter", "channels", "--help"], capture_output=True, text=True, check=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert "generate" in out.stdout
    assert "listen" in out.stdout


def test_generate_writes_a_channel_that_imports_and_prints_its_config_line(tmp_path):
    result = run("generate", "ChatRoom", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    path = tmp_path / "chat_room_channel.py"
    assert (
        'c.ChannelsApp.channels = {"chat_room:*": "chat_room_channel:ChatRoomChannel"}'
        in result.stdout
    )
    spec = importlib.util.spec_from_file_location("chat_room_channel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.ChatRoomChannel, jc.Channel)
    for hook in ("handle_joined", "handle_message", "handle_leave"):
        assert getattr(module.ChatRoomChannel, hook).__doc__


def test_generate_refuses_to_overwrite_a_file(tmp_path):
    (tmp_path / "chat_room_channel.py").write_text("# mine\n")

    result = run("generate", "ChatRoom", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "already exists" in result.stderr
    assert (tmp_path / "chat_room_channel.py").read_text() == "# mine\n"


def test_generate_refuses_to_overwrite_its_test_file(tmp_path):
    (tmp_path / "test_chat_room_channel.py").write_text("# mine\n")

    result = run("generate", "ChatRoom", cwd=tmp_path)

    assert result.returncode == 1
    assert "test_chat_room_channel.py already exists" in result.stderr
    assert not (tmp_path / "chat_room_channel.py").exists()


def test_the_command_generate_prints_starts_a_server_with_the_channel(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    printed = run("generate", "ChatRoom", cwd=work).stdout.splitlines()
    (command,) = [line.strip() for line in printed if "jupyter lab" in line]
    assert command.startswith("PYTHONPATH=")
    port, token = free_port(), "generated-" + os.urandom(4).hex()
    server_flags = (
        f" --no-browser --allow-root --ServerApp.ip=127.0.0.1 --ServerApp.port={port}"
        f" --ServerApp.port_retries=0 --IdentityProvider.token={token}"
        f" --ChannelsApp.history_path={tmp_path / 'history.sqlite'}"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    with (tmp_path / "lab.log").open("wb") as log:
        # Run as printed, from another directory: bash execs the one command it is given.
        lab = subprocess.Popen(
            ["bash", "-c", command + server_flags], cwd=tmp_path, env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: lab.poll() is not None or answers(url, token), timeout=120)
        assert lab.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
        with jc.connect(url, token) as conn:
            with pytest.raises(jc.JoinRejected) as refused:
                conn.join("chat_room:42", params={"banned": True})
            assert refused.value.detail == "not allowed in this room"

            room = conn.join("chat_room:42")
            wait_until(lambda: [m.subject for m in room.messages] == ["user_joined"])
    finally:
        stop_process(lab)


def answers(url: str, token: str) -> bool:
    request = urllib.request.Request(
        url + "api/channels/topics", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True
    except OSError:
        return False


def test_send_listen_topics_and_who_round_trip(server):
    listener = subprocess.Popen(
        [*CLI, "listen", "chat:cli", *at(server)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # The listener is there once `who` lists it.
        wait_until(lambda: run("who", "chat:cli", "--json", *at(server)).stdout.strip() != "{}")

        sent = run("send", "chat:cli", "text", '{"text": "hi"}', *at(server))
        assert sent.returncode == 0, sent.stderr
        offset = int(sent.stdout)

        line = json.loads(listener.stdout.readline())
        assert set(line) == {"topic", "subject", "payload", "offset", "ts", "from"}
        assert (line["topic"], line["subject"], line["payload"], line["offset"]) == (
            "chat:cli", "text", {"text": "hi"}, offset,
        )  # fmt: skip

        topics = run("topics", *at(server))
        assert f"chat:cli\t1\t{offset}" in topics.stdout.splitlines()
        rows = json.loads(run("topics", "--json", *at(server)).stdout)
        assert {"topic": "chat:cli", "members": 1, "offset": offset} in rows

        who = run("who", "chat:cli", *at(server)).stdout.splitlines()
        assert len(who) == 1
        assert who[0].split("\t")[2:] == ["1", "browser"]
    finally:
        listener.send_signal(signal.SIGINT)  # Ctrl-C
        listener.wait(20)
    assert listener.returncode == 0
    assert listener.stderr.read() == ""


def test_listen_with_history_prints_the_newest_first(server):
    for n in range(3):
        run("send", "chat:cli-history", "n", json.dumps(n), *at(server))
    listener = subprocess.Popen(
        [*CLI, "listen", "chat:cli-history", "--history", "2", *at(server)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [json.loads(listener.stdout.readline()) for _ in range(2)]
    finally:
        listener.send_signal(signal.SIGINT)
        listener.wait(20)
    assert [line["payload"] for line in lines] == [1, 2]


def no_server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISCOVERY_ENV}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "empty-runtime")
    return env


@pytest.mark.parametrize(
    "args", [["topics"], ["send", "chat:x", "text"], ["listen", "chat:x"], ["who", "chat:x"]]
)
def test_no_running_server_fails_with_one_line_and_status_1(tmp_path, args):
    result = run(*args, env=no_server_env(tmp_path))

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no running Jupyter server found" in result.stderr
    assert "--url" in result.stderr


def test_a_stale_server_file_is_reported_as_stale_with_its_pid(tmp_path):
    env = no_server_env(tmp_path)
    stale = stale_server_file(Path(env["JUPYTER_RUNTIME_DIR"]))
    pid = json.loads(stale.read_text())["pid"]

    result = run("topics", env=env)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"{stale} is stale: its server (pid {pid}) is not running" in result.stderr
    assert stale.exists()


def test_the_usage_names_each_argument_as_its_error_does():
    usage = run("send", "--help").stdout
    missing = run("send", "chat:x")
    bad_json = run("send", "chat:x", "text", "{not json")

    assert "TOPIC SUBJECT [PAYLOAD]" in usage
    assert "the following arguments are required: SUBJECT" in missing.stderr
    assert bad_json.stderr.startswith("jupyter channels: PAYLOAD is not valid JSON")


def test_a_url_that_is_not_a_server_url_fails_with_status_2():
    result = run("topics", "--url", "localhost:8888")

    assert result.returncode == 2
    assert result.stderr == (
        "jupyter channels: --url: not a server URL: 'localhost:8888' "
        "(expected http(s):// or ws(s)://)\n"
    )


def test_invalid_json_fails_with_status_2(server):
    result = run("send", "chat:x", "text", "{not json", *at(server))

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not valid JSON" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["topics"], ["send", "chat:x", "text"], ["who", "chat:x"], ["listen", "chat:x"]],
)
def test_a_refusing_server_fails_with_one_line_and_status_1(server, args):
    result = run(*args, "--url", server.http_url, "--token", "wrong")

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "refused" in result.stderr or "unauthorized" in result.stderr


def test_a_channel_rejection_reaches_the_cli(server):
    result = run("listen", "invite:club", *at(server))

    assert result.returncode == 1
    assert "invite required" in result.stderr


def test_the_server_is_found_through_its_runtime_file(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_CHANNELS_")}
    env["JUPYTER_RUNTIME_DIR"] = str(server.root / "runtime")

    result = run("send", "chat:found", "text", "{}", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_channels", "serve", "--help-all"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--ChannelsService.authentication" in done.stdout
