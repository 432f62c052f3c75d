"""The incremental SSE parser, fed the way a network feeds it: at any byte boundary."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.sse import SSEEvent, SSEParser

STREAM = (
    b'data: {"event": "message", "answer": "Hello \xe4\xb8\x96\xe7\x95\x8c"}\n\n'
    b": a comment\r\n"
    b"event: ping\r\n\r\n"
    b"data: line one\rdata: line two\r\n\r\n"
    b"id: 7\nevent: custom\ndata: x\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message", '{"event": "message", "answer": "Hello 世界"}'),
    SSEEvent("message", "line one\nline two"),
    SSEEvent("custom", "x", "7"),
    SSEEvent("message", "[DONE]", "7"),
]


def feed_in(chunks: list[bytes]) -> tuple[list[SSEEvent], int]:
    parser = SSEParser()
    events = [e for c in chunks for e in parser.feed(c)]
    return events + parser.close(), parser.malformed


def test_a_whole_stream() -> None:
    assert feed_in([STREAM]) == (EXPECTED, 0)


def test_every_split_point_gives_the_same_events() -> None:
    # Includes splits inside a multi-byte character and between a CR and its LF.
    for cut in range(1, len(STREAM)):
        assert feed_in([STREAM[:cut], STREAM[cut:]]) == (EXPECTED, 0), cut


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert feed_in(chunks) == (EXPECTED, 0)


def test_malformed_lines_are_skipped_and_counted() -> None:
    events, malformed = feed_in([b"bogus: field\n\xff\xfe broken\ndata: ok\n\n"])
    assert events == [SSEEvent("message", "ok")]
    assert malformed == 2


def test_a_last_event_without_its_blank_line_is_still_delivered() -> None:
    assert feed_in([b"data: tail"]) == ([SSEEvent("message", "tail")], 0)


def test_a_cr_at_the_end_of_a_read_waits_for_the_next() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r\n") == [SSEEvent("message", "a")]
