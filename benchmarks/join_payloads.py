"""What join payloads and many connections of one user cost a server.

    python benchmarks/join_payloads.py [--connections 5] [--topics 100] [--payload 1000000]
        [--per-user 250]

Starts a real Jupyter server with the extension, then:

- ``payloads``: ``--connections`` connections each join ``--topics`` topics with a
  join payload of ``--payload`` bytes; reports how many joins were accepted and the
  server's RSS before and after;
- ``per_user``: one user opens ``--per-user`` connections; reports how many the
  server kept open, and its RSS.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

sys.path.insert(0, str(Path(__file__).parent))
from _server import Server


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def connect(server: Server, cookie: str | None = None) -> WebSocketClientConnection:
    """A connection with the server's token, or as the user of a login ``cookie``."""
    url = server.http_url.replace("http", "ws") + "api/channels/websocket"
    headers = {"Cookie": cookie} if cookie else {"Authorization": f"token {server.token}"}
    return await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=2**30)


def login_cookie(server: Server) -> str:
    """One user's login cookie (each token request without one is a new anonymous user)."""
    request = urllib.request.Request(
        server.http_url + "api/channels/topics", headers={"Authorization": f"token {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookies = response.headers.get_all("Set-Cookie") or []
    return "; ".join(c.split(";", 1)[0] for c in cookies)


async def reply(conn: WebSocketClientConnection, ref: str) -> dict[str, Any]:
    while True:
        text = await asyncio.wait_for(conn.read_message(), 30)
        if text is None:
            return {"closed": conn.close_code}
        if text == "ping":
            continue
        frame = json.loads(text)
        if frame.get("ref") == ref:
            return dict(frame)


async def payloads(server: Server, connections: int, topics: int, size: int) -> dict[str, Any]:
    before = rss_mb(server.pid)
    conns = [await connect(server) for _ in range(connections)]
    accepted = refused = 0
    blob = "x" * size
    for c, conn in enumerate(conns):
        for t in range(topics):
            ref = f"{c}-{t}"
            frame = {"event": "join", "topic": f"bench:p{c}-{t}", "ref": ref,
                     "payload": {"blob": blob}, "presence": False}  # fmt: skip
            await conn.write_message(json.dumps(frame))
            answer = await reply(conn, ref)
            status = answer.get("payload", {}).get("status")
            if status == "ok":
                accepted += 1
            else:
                refused += 1
    after = rss_mb(server.pid)
    for conn in conns:
        conn.close()
    return {"joins_accepted": accepted, "joins_refused": refused,
            "rss_before_mb": before, "rss_after_mb": after,
            "rss_growth_mb": round(after - before, 1)}  # fmt: skip


async def per_user(server: Server, count: int) -> dict[str, Any]:
    cookie = login_cookie(server)
    conns = [await connect(server, cookie) for _ in range(count)]
    await asyncio.sleep(1.0)
    opened = 0
    for i, conn in enumerate(conns):
        try:
            await conn.write_message(json.dumps({"event": "heartbeat", "ref": f"h{i}"}))
        except WebSocketClosedError:
            continue
        answer = await reply(conn, f"h{i}")
        opened += "closed" not in answer
    rss = rss_mb(server.pid)
    for conn in conns:
        conn.close()
    return {"connections_tried": count, "connections_open": opened, "rss_mb": rss}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with Server(max_message_size=args.payload + 4096) as server:
        result = {"payloads": await payloads(server, args.connections, args.topics, args.payload)}
    with Server() as server:
        result["per_user"] = await per_user(server, args.per_user)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--payload", type=int, default=1_000_000)
    parser.add_argument("--per-user", type=int, default=250)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
