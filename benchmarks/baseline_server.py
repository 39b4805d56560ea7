"""The baseline: a bare Tornado WebSocket server that forwards every text frame it
receives, unchanged, to every other connection with a plain ``write_message`` loop.

    python benchmarks/baseline_server.py PORT

Nothing else: no topics, no history, no acks, no limits. Prints ``ready`` once
listening.
"""

from __future__ import annotations

import asyncio
import sys

from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

CONNECTIONS: set[ForwardHandler] = set()


class ForwardHandler(WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True  # a benchmark baseline on 127.0.0.1 only

    def open(self) -> None:
        self.set_nodelay(True)
        CONNECTIONS.add(self)

    def on_message(self, message: str | bytes) -> None:
        for other in list(CONNECTIONS):
            if other is not self:
                try:
                    other.write_message(message)
                except WebSocketClosedError:
                    CONNECTIONS.discard(other)

    def on_close(self) -> None:
        CONNECTIONS.discard(self)


async def main(port: int) -> None:
    app = Application([(r"/.*", ForwardHandler)], websocket_max_message_size=64 * 1024 * 1024)
    app.listen(port, "127.0.0.1", backlog=4096)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
