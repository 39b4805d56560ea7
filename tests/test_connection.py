"""One connection without sockets: the rate limiter, the outbound queue and its failure paths."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest
from jupyter_server.auth import User

from jupyter_channels.brokers.local import LocalBroker
from jupyter_channels.channel import RebroadcastChannel, Router
from jupyter_channels.connection import Client, RateLimiter, TransportClosed
from jupyter_channels.constants import CloseCode, Kind
from jupyter_channels.history.sqlite import SqliteHistory
from jupyter_channels.hub import Hub, Limits
from jupyter_channels.protocol import ws_text_frame

ALICE = User("alice", name="Alice", display_name="Alice A.", initials="AA", color="#f00")
BOB = User("bob", name="Bob", display_name="Bob B.", initials="BB", color="#00f")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTransport:
    """Records every write; each stays queued (its bytes and a future) until the test
    resolves the future: the bytes "left"."""

    def __init__(self, *, synchronous: bool = False) -> None:
        self.synchronous = synchronous
        self.writes: list[bytes] = []
        self.pending: list[asyncio.Future[None]] = []
        self.closes: list[tuple[int, str]] = []
        #: Once set, every write raises TransportClosed (the peer went away).
        self.broken = False

    def write(self, chunks: list[bytes]) -> tuple[int, asyncio.Future[None]] | None:
        if self.broken:
            raise TransportClosed
        data = b"".join(bytes(chunk) for chunk in chunks)
        self.writes.append(data)
        if self.synchronous:
            return None
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return len(data), future

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def ping(self) -> None:
        pass


def make_client(
    transport: FakeTransport, gone: list[Client], *, max_queued_bytes: int = 1 << 20
) -> Client:
    return Client(
        "conn-1",
        ALICE,
        Kind.BROWSER,
        transport,
        max_queued_bytes=max_queued_bytes,
        rate_limiter=RateLimiter(0, 0),
        on_gone=gone.append,
    )


def framed(text: str) -> bytes:
    return b"".join(bytes(part) for part in ws_text_frame(text).chunks)


async def next_turn() -> None:
    await asyncio.sleep(0)


# -- rate limiter -----------------------------------------------------------------------------


def test_a_full_bucket_allows_a_burst_then_refuses():
    limiter = RateLimiter(rate=10, burst=5, clock=FakeClock())

    assert [limiter.take() for _ in range(6)] == [True] * 5 + [False]


def test_tokens_come_back_at_the_rate():
    # Binary fractions of a second, so the clock's sums are exact.
    clock = FakeClock()
    limiter = RateLimiter(rate=8, burst=5, clock=clock)
    for _ in range(5):
        limiter.take()

    clock.advance(0.125)  # one token
    assert [limiter.take(), limiter.take()] == [True, False]
    clock.advance(0.4375)  # three and a half
    assert [limiter.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.0625)  # the half left over and another half
    assert limiter.take() is True


def test_a_refused_take_spends_nothing_and_the_fraction_keeps_accruing():
    clock = FakeClock()
    limiter = RateLimiter(rate=8, burst=1, clock=clock)
    limiter.take()

    clock.advance(0.0625)
    assert limiter.take() is False
    clock.advance(0.0625)
    assert limiter.take() is True


def test_the_bucket_never_holds_more_than_the_burst():
    clock = FakeClock()
    limiter = RateLimiter(rate=100, burst=3, clock=clock)

    clock.advance(3600)

    assert [limiter.take() for _ in range(4)] == [True, True, True, False]


def test_a_rate_of_zero_means_no_limit():
    limiter = RateLimiter(rate=0, burst=0, clock=FakeClock())

    assert all(limiter.take() for _ in range(10_000))


# -- identity -----------------------------------------------------------------------------------


def test_the_sender_stamp_is_id_username_display_name_and_kind():
    client = make_client(FakeTransport(), [])

    assert client.sender_json == '{"id":"conn-1","user":"alice","name":"Alice A.","kind":"browser"}'


# -- outbound queue -----------------------------------------------------------------------------


async def test_frames_sent_in_one_loop_turn_go_out_in_one_write():
    transport = FakeTransport()
    client = make_client(transport, [])

    client.send_text("one")
    client.send_text("two")
    client.send_text("three")
    assert transport.writes == []
    await next_turn()

    assert transport.writes == [framed("one") + framed("two") + framed("three")]


async def test_a_large_frame_among_small_ones_goes_out_in_the_same_write_in_order():
    transport = FakeTransport()
    client = make_client(transport, [])
    big = "x" * 100_000

    client.send_text("before")
    client.send_text(big)
    client.send_text("after")
    await next_turn()

    assert transport.writes == [framed("before") + framed(big) + framed("after")]


async def test_frames_sent_in_a_later_turn_go_out_in_a_second_write():
    transport = FakeTransport()
    client = make_client(transport, [])

    client.send_text("one")
    await next_turn()
    client.send_text("two")
    await next_turn()

    assert transport.writes == [framed("one"), framed("two")]


async def test_queued_bytes_counts_unsent_and_in_flight_bytes():
    transport = FakeTransport()
    client = make_client(transport, [])
    a, b = framed("a" * 10), framed("b" * 20)

    client.send_text("a" * 10)
    assert client.queued_bytes == len(a)  # unsent
    await next_turn()
    assert client.queued_bytes == len(a)  # in flight
    client.send_text("b" * 20)
    assert client.queued_bytes == len(a) + len(b)  # in flight + unsent
    await next_turn()
    assert client.queued_bytes == len(a) + len(b)  # both in flight

    transport.pending[0].set_result(None)
    await next_turn()
    assert client.queued_bytes == len(b)
    transport.pending[1].set_result(None)
    await next_turn()
    assert client.queued_bytes == 0


async def test_a_write_that_completes_at_once_leaves_nothing_queued():
    transport = FakeTransport(synchronous=True)
    client = make_client(transport, [])

    client.send_text("hello")
    await next_turn()

    assert transport.writes == [framed("hello")]
    assert client.queued_bytes == 0


async def test_going_past_max_queued_bytes_closes_with_4008_slow_consumer_and_frees_the_queue():
    transport = FakeTransport()
    gone: list[Client] = []
    client = make_client(transport, gone, max_queued_bytes=1000)
    client.send_text("x" * 600)
    await next_turn()  # 600 bytes in flight, never acknowledged

    client.send_text("y" * 300)
    assert not client.closed
    client.send_text("z" * 200)

    assert transport.closes == [(CloseCode.SLOW_CONSUMER, "slow consumer")]
    assert client.closed
    assert gone == [client]
    assert client.queued_bytes <= len(framed("x" * 600))
    await next_turn()
    assert transport.writes == [framed("x" * 600)]


async def test_a_reader_that_never_reads_never_costs_more_than_max_queued_bytes():
    transport = FakeTransport()
    gone: list[Client] = []
    client = make_client(transport, gone, max_queued_bytes=1000)

    for _ in range(100):
        client.send_text("m" * 100)
        assert client.queued_bytes <= 1000
    await next_turn()

    assert client.closed
    assert transport.writes == []
    assert transport.closes == [(CloseCode.SLOW_CONSUMER, "slow consumer")]
    assert gone == [client]


async def test_on_gone_is_called_once_however_often_the_connection_ends():
    transport = FakeTransport()
    gone: list[Client] = []
    client = make_client(transport, gone)

    client.disconnect("bye")
    client.lost()
    client.close(CloseCode.GOING_AWAY, "again")
    client.send_text("after the end")
    await next_turn()

    assert gone == [client]
    assert transport.closes == [(CloseCode.NORMAL, "bye")]
    assert transport.writes == []


async def test_a_write_raising_transport_closed_marks_the_client_gone():
    transport = FakeTransport()
    gone: list[Client] = []
    client = make_client(transport, gone)
    transport.broken = True

    client.send_text("into the void")
    await next_turn()

    assert client.closed
    assert gone == [client]
    assert client.queued_bytes == 0
    assert transport.closes == []  # nothing to close: the peer is already gone


async def test_a_write_whose_future_fails_marks_the_client_gone():
    transport = FakeTransport()
    gone: list[Client] = []
    client = make_client(transport, gone)
    client.send_text("hello")
    await next_turn()

    transport.pending[0].set_exception(ConnectionResetError("reset by peer"))
    await next_turn()

    assert client.closed
    assert gone == [client]
    assert client.queued_bytes == 0


# -- the hub drops a client whose write failed ------------------------------------------------


def parse_frames(data: bytes) -> list[Any]:
    """Split server frame bytes (unmasked text frames) into parsed JSON values."""
    frames = []
    while data:
        assert data[0] == 0x81
        n, start = data[1], 2
        if n == 126:
            (n,), start = struct.unpack("!H", data[2:4]), 4
        elif n == 127:
            (n,), start = struct.unpack("!Q", data[2:10]), 10
        frames.append(json.loads(data[start : start + n]))
        data = data[start + n :]
    return frames


def received(transport: FakeTransport) -> list[Any]:
    return [frame for data in transport.writes for frame in parse_frames(data)]


class LeaveRecorder(RebroadcastChannel):
    left: list[str]

    def handle_leave(self, client: Client) -> None:
        self.left.append(client.id)


@pytest.fixture
def hub(jp_asyncio_loop):
    router = Router()
    hub = Hub(router, LocalBroker(SqliteHistory(":memory:", 100)), Limits(presence_interval=0))
    channel = LeaveRecorder(hub, "*")
    channel.left = []
    router.add("*", channel)
    jp_asyncio_loop.run_until_complete(hub.ensure_started())
    yield hub
    jp_asyncio_loop.run_until_complete(hub.stop())


async def until(condition, what: str) -> None:
    """Let the loop run until ``condition()`` holds, for at most about 10 s."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_failed_write_removes_the_clients_subscriptions_and_presence(hub):
    alice_transport, bob_transport = (
        FakeTransport(synchronous=True),
        FakeTransport(synchronous=True),
    )
    alice = hub.connect("alice-1", ALICE, Kind.BROWSER, alice_transport)
    bob = hub.connect("bob-1", BOB, Kind.BROWSER, bob_transport)
    for client in (alice, bob):
        await hub.receive(client, json.dumps({"event": "join", "topic": "room", "ref": "j"}))
    await next_turn()
    assert set(hub.presence_state("room")) == {"alice", "bob"}

    alice_transport.broken = True
    await hub.receive(
        bob,
        json.dumps({"event": "message", "topic": "room", "subject": "text", "ref": "m"}),
    )
    await until(lambda: "alice-1" not in hub.clients, "alice dropped from the hub")

    assert alice.closed
    assert alice.subscriptions == {}
    assert set(hub.presence_state("room")) == {"bob"}
    assert hub.router.match("room").left == ["alice-1"]
    diff = [f for f in received(bob_transport) if f["event"] == "presence_diff"][-1]["payload"]
    assert diff["joins"] == {}
    assert [meta["phx_ref"] for meta in diff["leaves"]["alice"]["metas"]] == ["alice-1"]
