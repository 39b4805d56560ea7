"""The socket write path of a connection: a real Tornado stream over a real socket pair,
the handler around it reduced to what the transport reads (its WebSocket connection's
stream, ``close``). The slow-consumer rule on real servers: tests/test_limits.py."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tornado.iostream import IOStream

from jupyter_channels.connection import Client, RateLimiter
from jupyter_channels.constants import CloseCode, Kind
from jupyter_channels.edges.socket import StreamTransport
from jupyter_channels.protocol import ws_text_frame

from .support import await_until
from .test_connection import ALICE


class Handler:
    """What ``StreamTransport`` reads of a ``WebSocketHandler``."""

    def __init__(self, stream: IOStream) -> None:
        self.ws_connection = self
        self.stream = stream
        self.closes: list[int] = []

    def is_closing(self) -> bool:
        return self.stream.closed()

    def close(self, code: int, reason: str) -> None:
        self.closes.append(code)
        self.stream.close()


def pair(buffer: int | None = None) -> tuple[Handler, socket.socket]:
    ours, peer = socket.socketpair()
    if buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    ours.setblocking(False)
    return Handler(IOStream(ours)), peer


def client_on(handler: Handler, max_queued_bytes: int, gone: list[Client]) -> Client:
    return Client(
        "c1",
        ALICE,
        Kind.BROWSER,
        StreamTransport(handler),  # type: ignore[arg-type]
        max_queued_bytes=max_queued_bytes,
        rate_limiter=RateLimiter(0, 0),
        on_gone=gone.append,
    )


def drain(peer: socket.socket) -> bytes:
    peer.setblocking(True)
    peer.settimeout(10)
    out = b""
    while chunk := peer.recv(1 << 20):
        out += chunk
    return out


async def test_a_frame_the_socket_takes_leaves_at_once_with_nothing_left_to_wait_for():
    handler, peer = pair()
    transport = StreamTransport(handler)  # type: ignore[arg-type]
    frame = ws_text_frame('{"event":"message"}')

    assert transport.write(list(frame.chunks)) is None  # no future: nothing left queued
    assert not handler.stream.writing()
    handler.stream.close()
    assert drain(peer) == b"".join(frame.chunks)


async def test_what_the_socket_does_not_take_is_queued_and_counted_exactly_to_the_byte():
    handler, peer = pair(buffer=64 * 1024)
    gone: list[Client] = []
    limit = 1024 * 1024
    client = client_on(handler, limit, gone)
    frame = ws_text_frame("x" * 50_000)  # over half the buffer: the socket takes part of one
    sent = 0
    queued_before_last = 0
    while not gone:
        queued_before_last = client.queued_bytes
        client.send(frame)
        if gone:
            break
        sent += frame.size
        for _ in range(3):  # the flush, and anything the stream's callbacks would do
            await asyncio.sleep(0)
        assert sent < 4 * limit, "never closed"

    # Closed at the first frame that did not fit, not one earlier.
    assert handler.closes == [CloseCode.SLOW_CONSUMER]
    assert queued_before_last + frame.size > limit >= queued_before_last
    # Every byte was either taken by the socket or counted as queued: none twice.
    assert len(drain(peer)) + queued_before_last == sent


async def test_frames_keep_their_order_across_the_socket_and_the_stream_queue():
    handler, peer = pair(buffer=16 * 1024)
    gone: list[Client] = []
    client = client_on(handler, 64 * 1024 * 1024, gone)
    frames = [ws_text_frame(f"{i:06d}" + "y" * 3000) for i in range(300)]
    for i, frame in enumerate(frames):
        client.send(frame)
        if i % 7 == 0:
            await asyncio.sleep(0)
    reader = asyncio.get_running_loop().run_in_executor(None, _read_all, peer, frames)
    received = await asyncio.wait_for(reader, 30)
    assert received == b"".join(b"".join(bytes(c) for c in f.chunks) for f in frames)
    assert not gone
    await await_until(lambda: client.queued_bytes == 0)


def _read_all(peer: socket.socket, frames: Any) -> bytes:
    total = sum(f.size for f in frames)
    peer.setblocking(True)
    peer.settimeout(10)
    out = b""
    while len(out) < total:
        out += peer.recv(1 << 20)
    return out


class Exploding:
    """A transport whose write fails with an error no transport should raise."""

    def write(self, chunks: list[bytes]) -> None:
        raise ValueError("a bug")

    def close(self, code: int, reason: str) -> None:
        pass

    def ping(self) -> None:
        pass


async def test_a_connection_whose_flush_fails_is_dropped_and_the_others_are_still_flushed():
    handler, peer = pair()
    gone: list[Client] = []
    broken = Client(
        "c0", ALICE, Kind.BROWSER, Exploding(), max_queued_bytes=1 << 20,
        rate_limiter=RateLimiter(0, 0), on_gone=gone.append,
    )  # fmt: skip
    healthy = client_on(handler, 1 << 20, gone)
    frame = ws_text_frame("hello")
    broken.send(frame)  # flushed first, in the same callback
    healthy.send(frame)
    await asyncio.sleep(0)

    assert gone == [broken]
    handler.stream.close()
    assert drain(peer) == b"".join(frame.chunks)
