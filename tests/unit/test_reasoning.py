"""Reasoning told apart from the answer as the text streams in."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.reasoning import ThinkSplitter

ANSWER = "<think>\nLet me think.\n</think>\n\nThe answer is 42."


def split(chunks: list[str]) -> tuple[str, str, int]:
    """(reasoning, answer, retractions)."""
    splitter = ThinkSplitter()
    segments = [s for chunk in chunks for s in splitter.feed(chunk)] + splitter.flush()
    reasoning = "".join(t for k, t in segments if k == "reasoning")
    answer = "".join(t for k, t in segments if k == "answer")
    return reasoning, answer, sum(1 for k, _ in segments if k == "retract")


@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=8))
def test_tags_split_anywhere_across_chunks(cuts: list[int]) -> None:
    points = sorted({0, len(ANSWER), *cuts})
    chunks = [ANSWER[a:b] for a, b in itertools.pairwise(points)]
    assert split(chunks) == ("\nLet me think.\n", "The answer is 42.", 0)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["No reasoning here."], ("", "No reasoning here.", 0)),
        (["  <think>x</think>y"], ("x", "y", 0)),
        (["<thin", "g>"], ("", "<thing>", 0)),
        (["<b>bold</b> text"], ("", "<b>bold</b> text", 0)),
        (["<think>never closed"], ("never closed", "", 0)),
        (
            ['<details style="color:gray" open> <summary> Thinking... </summary> hmm </details>ok'],
            (" hmm ", "ok", 0),
        ),
        (["<details>" + "x" * 600], ("", "<details>" + "x" * 600, 0)),
    ],
)
def test_the_shapes_dify_sends(chunks: list[str], expected: tuple[str, str, int]) -> None:
    assert split(chunks) == expected


def test_a_lone_closing_tag_takes_back_what_went_out_as_answer() -> None:
    splitter = ThinkSplitter()
    segments = [
        *splitter.feed("said "),
        *splitter.feed("then</th"),
        *splitter.feed("ink>\n\nreal"),
        *splitter.flush(),
    ]
    assert segments == [
        ("answer", "said "),
        ("answer", "then"),
        ("retract", ""),
        ("answer", "real"),
    ]
    # Once a reasoning block was seen, a later </think> is answer text.
    splitter = ThinkSplitter()
    later = [*splitter.feed("<think>a</think>b</think>c"), *splitter.flush()]
    assert later == [("reasoning", "a"), ("answer", "b</think>c")]


def test_in_reasoning_while_inside_the_block() -> None:
    splitter = ThinkSplitter()
    splitter.feed("<think>hm")
    assert splitter.in_reasoning
    splitter.feed("</think>ok")
    assert not splitter.in_reasoning
