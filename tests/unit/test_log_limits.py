"""Log lines a client can trigger: on one bounded line each, and a few a minute at most."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.logs import LogLimiter, describe, one_line

LOGGER = logging.getLogger("test.limits")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER.name]


def test_one_line_escapes_control_characters_and_bounds_the_length() -> None:
    assert one_line("plain text") == "plain text"
    assert one_line("a\nb\r\x00\x1b[31m\u2028c") == "a\\nb\\r\\x00\\x1b[31m\\u2028c"
    assert one_line("é中") == "é中"  # printable non-ASCII stays readable
    long = one_line("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("…")
    assert describe(ValueError("400, message:\n  bad\n")) == "ValueError: 400, message: bad"
    assert describe(KeyError()) == "KeyError"


def test_a_burst_is_logged_then_counted_and_the_count_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = LogLimiter(LOGGER, burst=3, window=60.0, clock=clock)
    caplog.set_level(logging.INFO, LOGGER.name)
    for i in range(10):
        limiter.log("bot s: rejected webhooks (401)", logging.INFO, "rejected %d", i)
    limiter.log("bot s: rejected webhooks (400)", logging.INFO, "other kind")
    assert messages(caplog) == ["rejected 0", "rejected 1", "rejected 2", "other kind"]
    # Without a running loop the count comes with the key's next line after the window.
    clock.now += 61
    limiter.log("bot s: rejected webhooks (401)", logging.INFO, "rejected %d", 10)
    assert messages(caplog)[4:] == [
        "bot s: rejected webhooks (401): 7 more in the last 60 s, not logged",
        "rejected 10",
    ]


def test_allow_takes_from_the_same_budget() -> None:
    clock = Clock()
    limiter = LogLimiter(LOGGER, burst=1, window=60.0, clock=clock)
    assert limiter.allow("bot s")
    assert not limiter.allow("bot s")
    assert limiter.allow("bot t")
    clock.now += 60
    assert limiter.allow("bot s")


async def test_the_count_is_reported_when_the_window_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = LogLimiter(LOGGER, burst=1, window=0.2)
    caplog.set_level(logging.INFO, LOGGER.name)
    for _ in range(5):
        limiter.log("accept failures", logging.ERROR, "cannot accept")
    assert messages(caplog) == ["cannot accept"]
    await asyncio.sleep(0.3)  # no further line needed to trigger it
    assert messages(caplog) == [
        "cannot accept",
        "accept failures: 4 more in the last 0.2 s, not logged",
    ]
