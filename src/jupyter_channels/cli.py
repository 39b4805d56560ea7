"""``jupyter channels``: generate a channel, and talk to a running server from a terminal.

::

    jupyter channels generate ChatRoom          # writes chat_room_channel.py and its tests
    jupyter channels topics [--json]            # topic, members, last offset
    jupyter channels send TOPIC SUBJECT [PAYLOAD]  # PAYLOAD is JSON; prints the offset
    jupyter channels listen TOPIC [--since N] [--history N]   # one JSON line per message
    jupyter channels who TOPIC [--json]         # who is here

The server is found like ``jupyter server list`` does (Jupyter's runtime
files), or given with ``--url`` / ``--token``. Errors go to stderr as one line,
with a non-zero exit status: 1 when the server is missing or refuses, 2 for a
bad command line (invalid JSON included).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .constants import REST_ROOT

PROG = "jupyter channels"


class CliError(Exception):
    """A failure to report on one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- finding the server ---------------------------------------------------------------------


def find_server(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The server's http base URL and token, found as the Python client finds it:
    ``--url``, the environment, then the runtime files of running servers (newest first)."""
    from .client.discovery import http_url, resolve
    from .client.errors import ServerNotFound

    try:
        endpoint = resolve(url, token, hint="Start one, or pass --url URL --token TOKEN.")
    except ServerNotFound as e:
        raise CliError(e.detail) from None
    except ValueError as e:
        raise CliError(f"--url: {e}", 2) from None
    return http_url(endpoint.url), endpoint.token


def rest(server: tuple[str, str | None], method: str, path: str, body: Any = None) -> Any:
    """Call the REST API; raises :class:`CliError` with the server's reason on failure."""
    base, token = server
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + REST_ROOT + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            error = json.loads(e.read())
            reason = f"{error.get('reason')}: {error.get('detail')}"
        except ValueError:
            reason = e.reason
        raise CliError(f"the server refused ({e.code}): {reason}") from None
    except OSError as e:
        raise CliError(f"cannot reach {base}: {e}") from None


def _topic(topic: str) -> str:
    return quote(topic, safe="")


# -- commands -------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> None:
    from .scaffold import generate

    try:
        made = generate(args.name, Path(args.dir))
    except ValueError as e:
        raise CliError(str(e), 2) from None
    except FileExistsError as e:
        raise CliError(str(e)) from None
    print(f"wrote {made.channel} and its tests, {made.test} (run: pytest {made.test})")
    print(f"The server imports it as {made.module}, so its directory must be on PYTHONPATH.")
    print("Start JupyterLab with it registered (works from any directory):")
    print(f"    {made.command}")
    print("or put this line in jupyter_server_config.py and start the server with that PYTHONPATH:")
    print(f"    {made.config_line}")


def cmd_topics(args: argparse.Namespace) -> None:
    topics = rest(find_server(args.url, args.token), "GET", "topics")
    if args.json:
        print(json.dumps(topics))
        return
    for row in topics:
        print(f"{row['topic']}\t{row['members']}\t{row['offset']}")


def cmd_send(args: argparse.Namespace) -> None:
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        raise CliError(f"PAYLOAD is not valid JSON: {e}", 2) from None
    server = find_server(args.url, args.token)
    body = {"subject": args.subject, "payload": payload}
    response = rest(server, "POST", f"topics/{_topic(args.topic)}/messages", body)
    print(response.get("offset", ""))


def cmd_who(args: argparse.Namespace) -> None:
    state = rest(find_server(args.url, args.token), "GET", f"topics/{_topic(args.topic)}/presence")
    if args.json:
        print(json.dumps(state))
        return
    for username, entry in state.items():
        metas = entry["metas"]
        kinds = ",".join(sorted({m.get("kind", "") for m in metas}))
        print(f"{username}\t{metas[0].get('name', '')}\t{len(metas)}\t{kinds}")


def cmd_listen(args: argparse.Namespace) -> None:
    from .client import ChannelError, connect
    from .message import Message

    base, token = find_server(args.url, args.token)
    try:
        conn = connect(base, token)
    except ChannelError as e:
        raise CliError(f"cannot listen: {e}") from None
    stop = threading.Event()

    def show(message: Message) -> None:
        sys.stdout.write(json.dumps(message.fields()) + "\n")
        sys.stdout.flush()

    try:
        room = conn.join(args.topic, since=args.since, history=args.history)
        for message in room.messages:
            show(message)
        room.on("*", show)
        while not stop.wait(0.5):
            if not room.joined:
                raise CliError(f"the subscription ended: {room.close_reason}")
    except ChannelError as e:
        raise CliError(f"cannot listen: {e}") from None
    except KeyboardInterrupt:
        pass  # Ctrl-C ends listening; that is the normal way out
    finally:
        conn.close()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description="Generate a channel, and talk to a running server."
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, server: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if server:
            sub.add_argument("--url", help="the server's URL (default: the running server)")
            sub.add_argument("--token", help="the server's token")
        return sub

    gen = command(
        "generate", "write NAME_channel.py with a Channel subclass, and its tests", server=False
    )
    gen.add_argument("name", metavar="NAME", help="e.g. ChatRoom")
    gen.add_argument("--dir", default=".", help="where to write it (default: here)")
    gen.set_defaults(run=cmd_generate)

    topics = command("topics", "list topics with members or history")
    topics.add_argument("--json", action="store_true", help="print JSON")
    topics.set_defaults(run=cmd_topics)

    send = command("send", "send a message; prints its offset")
    send.add_argument("topic", metavar="TOPIC")
    send.add_argument("subject", metavar="SUBJECT")
    send.add_argument(
        "payload",
        metavar="PAYLOAD",
        nargs="?",
        default="{}",
        help="the payload as JSON (default: {})",
    )
    send.set_defaults(run=cmd_send)

    listen = command("listen", "print each message as a JSON line until Ctrl-C")
    listen.add_argument("topic", metavar="TOPIC")
    listen.add_argument("--since", type=int, help="start after this offset")
    listen.add_argument("--history", type=int, default=0, help="first print the newest N")
    listen.set_defaults(run=cmd_listen)

    who = command("who", "list who is on a topic")
    who.add_argument("topic", metavar="TOPIC")
    who.add_argument("--json", action="store_true", help="print JSON")
    who.set_defaults(run=cmd_who)

    commands.add_parser(
        "serve",
        help="run the channels service (see: jupyter channels serve --help)",
        add_help=False,
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # The service is a traitlets application: its flags and --help are its own.
        from .service import main as serve

        serve(argv[1:])
        return 0
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except CliError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
