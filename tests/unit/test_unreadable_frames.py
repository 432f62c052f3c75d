"""Frames a long connection cannot parse are logged through one limiter: a peer sending
garbage in a loop writes a few lines a minute per connection and then a count, whichever
platform it is (Slack Socket Mode, Feishu, DingTalk Stream, WeCom AI bot)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.dingtalk.connection import StreamClient
from adapters.feishu.connection import FeishuSocket
from adapters.slack.connection import SocketModeSession
from adapters.wecom_bot.connection import parse
from gateway import longconn
from gateway.logs import LogLimiter
from gateway.longconn import ConnectionClosed, Frame
from gateway.platform import Delivery

BAD_FRAMES = 1000
BURST = 10  # LogLimiter's default: what every long connection gets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The shared limiter, fresh for each test and on a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(longconn, "_unreadable", LogLimiter(longconn.log, clock=clock))
    return clock


async def never(*args: Any) -> Delivery:
    raise AssertionError("a frame that does not parse reached the adapter")


class Garbage:
    """A WebSocket whose peer sends `count` frames that are no Feishu frame, then closes."""

    def __init__(self, count: int) -> None:
        self.left = count

    async def receive(self) -> Frame:
        if self.left == 0:
            raise ConnectionClosed("peer closed")
        self.left -= 1
        return Frame("binary", b"\xff\xff\xff")

    async def send_bytes(self, data: bytes) -> None:
        pass  # the pings


def slack() -> Callable[[], Awaitable[Any]]:
    session = SocketModeSession("slack-main", None, never, lambda up: None)  # type: ignore[arg-type]
    return lambda: session.read_frame(Frame("text", "{not json"))


def dingtalk() -> Callable[[], Awaitable[Any]]:
    stream = StreamClient("ding-main", None, never)  # type: ignore[arg-type]
    return lambda: stream.read_frame(b"\x00 not json")


def wecom_bot() -> Callable[[], Awaitable[Any]]:
    async def read() -> None:
        assert parse(Frame("text", "[]")) is None

    return read


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.longconn"]


@pytest.mark.parametrize("platform", [slack, dingtalk, wecom_bot])
async def test_a_thousand_bad_frames_write_a_few_lines_then_a_count(
    platform: Callable[[], Callable[[], Awaitable[Any]]],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    read_bad_frame = platform()
    with caplog.at_level(logging.WARNING, logger="gateway.longconn"):
        for _ in range(BAD_FRAMES):
            await read_bad_frame()
        logged = lines(caplog)
        assert len(logged) == BURST
        assert all("frame that does not parse" in line for line in logged)
        # A minute on, the next bad frame is logged again, after the count of the rest.
        clock.now += 61
        await read_bad_frame()
    count, again = lines(caplog)[BURST:]
    assert count.endswith(f"{BAD_FRAMES - BURST} more in the last 60 s, not logged")
    assert "frame that does not parse" in again


async def test_a_thousand_bad_feishu_frames_write_a_few_lines(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    socket = FeishuSocket("feishu f", None, never, lambda up: None)  # type: ignore[arg-type]
    ws = Garbage(BAD_FRAMES)
    with (
        caplog.at_level(logging.WARNING, logger="gateway.longconn"),
        pytest.raises(ConnectionClosed),
    ):
        await socket._serve(ws, 1)  # type: ignore[arg-type]
    assert ws.left == 0  # every frame was read, none stopped the session
    logged = lines(caplog)
    assert len(logged) == BURST
    assert logged[0] == (
        "feishu f: dropping a long connection frame that does not parse: "
        "FrameError: truncated or overlong varint"
    )


async def test_each_connection_has_its_own_budget(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.longconn"):
        for _ in range(BAD_FRAMES):
            longconn.unreadable_frame("bot a", "Stream", "no JSON")
        longconn.unreadable_frame("bot b", "Stream", "no JSON")
    logged = lines(caplog)
    assert len(logged) == BURST + 1
    assert logged[-1] == "bot b: dropping a Stream frame that does not parse: no JSON"
