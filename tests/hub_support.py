"""A real JupyterHub for tests: the hub from PyPI, its configurable-http-proxy (npm, in
node_modules/), DummyAuthenticator with a password, the simple local-process spawner, and
the channels service as a hub-managed service.

Users ``alice`` and ``bob`` (bob in group ``teachers``). Everything runs on free ports
under the test's directory; :meth:`SpawnedHub.stop` ends the hub and every process it
started (proxy, service, users' servers and their kernels).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from .support import REPO_ROOT, free_port

PASSWORD = "channels-test-password"
USERS = ("alice", "bob")
GROUPS = {"teachers": ["bob"]}
SERVICE = "channels"
SCOPE = f"access:services!service={SERVICE}"
PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
SINGLEUSER = Path(sys.executable).parent / "jupyterhub-singleuser"

#: The class permissions of docs/jupyterhub.md.
CLASS_PERMISSIONS = [
    {"topic": "announce:*", "join": "*", "send": "@teachers"},
    {"topic": "group:{group}:*", "join": "@{group}", "send": "@{group}"},
    {"topic": "user:{user}:*", "join": "{user}", "send": "*"},
    {"topic": "*", "join": "*", "send": "*", "moderate": "@teachers"},
]


def missing() -> str | None:
    """What the hub tests need and this machine lacks, or None."""
    if not PROXY.exists():
        return f"configurable-http-proxy is not installed at {PROXY} (run scripts/setup --test)"
    if not SINGLEUSER.exists():
        return f"jupyterhub-singleuser is not installed at {SINGLEUSER} (pip install jupyterhub)"
    return None


def require() -> None:
    """Fail (never skip) when this machine lacks what the hub tests need."""
    why = missing()
    if why:
        pytest.fail(f"the JupyterHub tests need it: {why}", pytrace=False)


class SpawnedHub:
    """``jupyterhub`` as a subprocess, with the channels service registered in it."""

    def __init__(self, root: Path, *, permissions: list[dict[str, Any]] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.service_port = free_port()
        self.permissions = CLASS_PERMISSIONS if permissions is None else permissions
        self.admin_token = secrets.token_hex(24)
        self.log_path = root / "jupyterhub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._started: set[int] = set()

    @property
    def url(self) -> str:
        """The hub's public URL (its proxy)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_url(self) -> str:
        """The channels service through the proxy, as users' servers and pages reach it."""
        return f"{self.url}services/{SERVICE}/"

    @property
    def service_ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/services/{SERVICE}/api/channels/websocket"

    @property
    def service_direct(self) -> str:
        """The channels service itself, bypassing the proxy."""
        return f"http://127.0.0.1:{self.service_port}/services/{SERVICE}/"

    def config(self) -> str:
        root = self.root
        service_config = root / "channels_config.py"
        service_config.write_text(
            f"c.ChannelsApp.history_path = {str(root / 'channels.sqlite')!r}\n"
            f"c.ChannelsApp.permissions = {self.permissions!r}\n"
            f"c.ChannelsService.cookie_secret_file = {str(root / 'channels_cookie_secret')!r}\n"
        )
        services = [
            {
                "name": SERVICE,
                "url": f"http://127.0.0.1:{self.service_port}",
                "command": [
                    sys.executable, "-m", "jupyter_channels", "serve",
                    f"--config={service_config}", "--log-level=DEBUG",
                ],
                "oauth_no_confirm": True,
                "environment": {"PYTHONPATH": str(REPO_ROOT)},
            },
            {"name": "test-admin", "api_token": self.admin_token},
        ]  # fmt: skip
        roles = [
            {"name": "user", "scopes": ["self", SCOPE]},
            {
                "name": "test-admin",
                "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups", "proxy"],
                "services": ["test-admin"],
            },
        ]
        return "\n".join(
            [
                f"c.JupyterHub.bind_url = {self.url!r}",
                f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{self.hub_port}'",
                f"c.JupyterHub.db_url = 'sqlite:///{root / 'jupyterhub.sqlite'}'",
                f"c.JupyterHub.cookie_secret_file = {str(root / 'jupyterhub_cookie_secret')!r}",
                f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.proxy_api_port}'",
                f"c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]",
                f"c.ConfigurableHTTPProxy.pid_file = {str(root / 'proxy.pid')!r}",
                "c.JupyterHub.authenticator_class = 'dummy'",
                f"c.DummyAuthenticator.password = {PASSWORD!r}",
                f"c.Authenticator.allowed_users = {set(USERS)!r}",
                f"c.JupyterHub.load_groups = { ({g: {'users': u} for g, u in GROUPS.items()})!r}",
                f"c.JupyterHub.load_roles = {roles!r}",
                f"c.JupyterHub.services = {services!r}",
                "c.JupyterHub.spawner_class = 'simple'",
                "c.SimpleLocalProcessSpawner.home_dir_template = "
                f"{str(root / 'home' / '{username}')!r}",
                f"c.Spawner.cmd = [{str(SINGLEUSER)!r}]",
                "c.Spawner.args = ['--allow-root']",
                "c.Spawner.default_url = '/lab'",
                "c.Spawner.start_timeout = 120",
                "c.Spawner.http_timeout = 120",
                f"c.Spawner.environment = {{'JUPYTER_CHANNELS_SERVICE_URL': {self.service_url!r}}}",
                "c.Spawner.server_token_scopes = "
                f"['users:activity!user', 'access:servers!server', {SCOPE!r}]",
                "c.JupyterHub.cleanup_servers = True",
            ]
        )

    def start(self, timeout: float = 120) -> SpawnedHub:
        self.root.mkdir(parents=True, exist_ok=True)
        for user in USERS:
            (self.root / "home" / user).mkdir(parents=True, exist_ok=True)
        config = self.root / "jupyterhub_config.py"
        config.write_text(self.config())
        env = {**os.environ, "PATH": f"{PROXY.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._started.add(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited: {self.log_tail()}")
            try:
                self.service_rest("GET", "api/channels/topics", token=self.admin_token)
                return self
            except urllib.error.HTTPError as e:
                if e.code != 403:  # the service answers (it refuses the admin's token)
                    time.sleep(0.3)
                    continue
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"jupyterhub did not start: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def descendants(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def service_process(self) -> psutil.Process:
        """The channels service's process (a child of the hub)."""
        for proc in self.descendants():
            try:
                if proc.cmdline()[1:4] == ["-m", "jupyter_channels", "serve"]:
                    return proc
            except psutil.NoSuchProcess:
                continue
        raise LookupError("no channels service process under the hub")

    def stop(self) -> None:
        """The hub, and everything it started: its cleanup first, then whatever is left."""
        if self.proc is None:
            return
        left = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        left += [p for p in self.descendants() if p not in left]
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc = None

    # -- the hub's REST API ----------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        return _call(self.url + "hub/api/" + path, method, body, token or self.admin_token)

    def token_for(self, user: str, scopes: list[str] | None = None) -> str:
        """A new API token of ``user`` (default: all of the user's own scopes)."""
        body: dict[str, Any] = {"note": "channels tests", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        return str(self.api("POST", f"users/{user}/tokens", body)["token"])

    def start_server(self, user: str, timeout: float = 150) -> None:
        """Start ``user``'s server and wait until the hub says it is ready."""
        try:
            self.api("POST", f"users/{user}/server")
        except urllib.error.HTTPError as e:
            if e.code != 400:  # 400: already running
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"users/{user}")["servers"].get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{user}'s server did not start: {self.log_tail()}")

    def service_rest(
        self, method: str, path: str, body: Any = None, *, token: str, direct: bool = False
    ) -> Any:
        """A REST call to the channels service with ``token`` (through the proxy, or not)."""
        base = self.service_direct if direct else self.service_url
        return _call(base + path, method, body, token)

    # -- kernels of users' servers -----------------------------------------------------------

    async def kernel(self, user: str) -> UserKernel:
        """A new kernel in ``user``'s (running) server, driven over its REST and WebSocket API."""
        token = self.token_for(user, [f"access:servers!user={user}"])
        base = f"{self.url}user/{user}/"
        model = await asyncio.to_thread(_call, base + "api/kernels", "POST", {}, token)
        kernel = UserKernel(base, model["id"], token)
        await kernel.connect()
        return kernel


class UserKernel:
    """A kernel of a user's server: runs code as that user's notebook would."""

    def __init__(self, base: str, kernel_id: str, token: str) -> None:
        self.base = base
        self.id = kernel_id
        self.token = token
        self.conn: Any = None

    async def connect(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.base.replace("http://", "ws://") + f"api/kernels/{self.id}/channels"
        request = HTTPRequest(
            url,
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=60,
            request_timeout=60,
        )
        self.conn = await websocket_connect(request)

    async def run(self, code: str, timeout: float = 120) -> str:
        """Run ``code``; its printed output. Raises ``RuntimeError`` with the traceback
        when it raises."""
        msg_id = secrets.token_hex(8)
        await self.conn.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "test",
                        "session": "tests",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": True},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        output: list[str] = []
        error: list[str] = []
        idle = replied = False
        deadline = asyncio.get_running_loop().time() + timeout
        while not (idle and replied):
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(self.conn.read_message(), max(left, 0.1))
            if raw is None:
                raise RuntimeError("the kernel's WebSocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                error.append("\n".join(content.get("traceback", [])) or content.get("evalue", ""))
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
        if error:
            raise RuntimeError("".join(error))
        return "".join(output)

    async def shutdown(self) -> None:
        if self.conn is not None:
            self.conn.close()
        await asyncio.to_thread(
            _call, self.base + f"api/kernels/{self.id}", "DELETE", None, self.token
        )


def _call(url: str, method: str, body: Any, token: str) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw else None
