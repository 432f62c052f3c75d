"""The outbox between the store and one socket: newer frames of an answer replace older ones
still waiting, and a reader that stops reading is cut off with 1013, never buffered for."""

from __future__ import annotations

import asyncio

from adapters.web.outbox import TRY_AGAIN_LATER, Outbox
from adapters.web.session import RateLimit
from gateway.platform import SocketClosed
from tests.helpers import wait_for


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()  # clear: the peer is not reading
        self.gate.set()
        self.closed_with: int | None = None

    async def send_text(self, text: str) -> None:
        if self.closed_with is not None:
            raise SocketClosed()
        await self.gate.wait()
        self.sent.append(text)

    async def receive(self) -> str | bytes | None:
        return None

    async def close(self, code: int = 1000) -> None:
        if self.closed_with is None:
            self.closed_with = code


async def test_frames_go_out_in_order() -> None:
    socket = FakeSocket()
    outbox = Outbox(socket)
    for n in range(3):
        outbox.put(f"f{n}")
    await wait_for(lambda: len(socket.sent) == 3)
    assert socket.sent == ["f0", "f1", "f2"]
    await outbox.aclose()


async def test_a_newer_frame_of_an_answer_replaces_the_one_still_waiting() -> None:
    socket = FakeSocket()
    socket.gate.clear()
    outbox = Outbox(socket)
    outbox.put("a1", "a")  # taken by the writer at once, stuck in send
    await asyncio.sleep(0.01)
    outbox.put("a2", "a")
    outbox.put("b1", "b")
    outbox.put("a3", "a")  # replaces a2 in its place, before b1
    socket.gate.set()
    await wait_for(lambda: len(socket.sent) == 3)
    assert socket.sent == ["a1", "a3", "b1"]
    assert socket.closed_with is None
    await outbox.aclose()


async def test_too_many_answers_waiting_cut_the_reader_off() -> None:
    socket = FakeSocket()
    socket.gate.clear()
    outbox = Outbox(socket, limit=3)
    for answer in "abcd":
        outbox.put(f"{answer}1", answer)
    await wait_for(lambda: socket.closed_with is not None)
    assert socket.closed_with == TRY_AGAIN_LATER and outbox.cut_off
    outbox.put("late", "e")  # nothing more is queued for a socket that is cut off
    await outbox.aclose()
    assert "late" not in socket.sent


async def test_a_peer_that_stops_reading_is_cut_off() -> None:
    socket = FakeSocket()
    socket.gate.clear()  # a send never completes, as when the peer's buffers are full
    outbox = Outbox(socket, stall_s=0.2)
    outbox.put("stuck", "a")
    await wait_for(lambda: socket.closed_with is not None, within=3)
    assert socket.closed_with == TRY_AGAIN_LATER and outbox.closed.is_set()
    await outbox.aclose()


async def test_a_socket_closed_by_the_peer_ends_the_writer_quietly() -> None:
    socket = FakeSocket()
    socket.closed_with = 1000
    outbox = Outbox(socket)
    outbox.put("x")
    await asyncio.wait_for(outbox.closed.wait(), 2)
    assert not outbox.cut_off and socket.sent == []
    await outbox.aclose()


def test_the_rate_limit_is_a_sliding_minute() -> None:
    now = [1000.0]
    rate = RateLimit(3, clock=lambda: now[0])
    assert [rate.allow() for _ in range(4)] == [True, True, True, False]
    now[0] += 30
    assert not rate.allow()  # still three within the last minute
    now[0] += 30.5  # the first three are more than a minute old now
    assert [rate.allow() for _ in range(4)] == [True, True, True, False]
