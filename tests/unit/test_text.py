"""Splitting: parts join back to the input, no part exceeds the limit, fences stay balanced."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.text import measure, paragraph_break, split_text

FENCE = re.compile(r"^ {0,3}```", re.MULTILINE)

words = st.text(alphabet=st.sampled_from(list("abc xyz\n世界é😀-*_`")), min_size=0, max_size=80)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Paragraphs and balanced fenced code blocks, in Latin, CJK and emoji."""
    blocks = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            lang = draw(st.sampled_from(["", "python", "js"]))
            body = "\n".join(
                draw(st.lists(st.text(alphabet="ab c=()世", max_size=30), max_size=10))
            )
            blocks.append(f"```{lang}\n{body}\n```")
        else:
            blocks.append(
                draw(st.text(alphabet="lorem ipsum 世界😀\n", min_size=1, max_size=200)).replace(
                    "```", ""
                )
            )
    return "\n\n".join(blocks)


@settings(max_examples=300)
@given(
    text=st.one_of(words, documents()),
    limit=st.integers(16, 300),
    unit=st.sampled_from(["chars", "bytes"]),
)
def test_parts_join_to_the_input_and_fit_the_limit(text: str, limit: int, unit: str) -> None:
    parts = split_text(text, limit, unit)  # type: ignore[arg-type]
    assert "".join(p.body for p in parts) == text
    for part in parts:
        assert measure(part.render(), unit) <= limit  # type: ignore[arg-type]


@settings(max_examples=300)
@given(text=documents(), limit=st.integers(40, 300), unit=st.sampled_from(["chars", "bytes"]))
def test_every_part_has_balanced_fences(text: str, limit: int, unit: str) -> None:
    for part in split_text(text, limit, unit):  # type: ignore[arg-type]
        assert len(FENCE.findall(part.render())) % 2 == 0, part


def test_prefers_paragraphs_then_lines_then_words() -> None:
    # A paragraph break in the second half of the window beats a later line or word break.
    text = "First paragraph, a little longer.\n\nSecond one, and some more words."
    assert [p.body for p in split_text(text, 50)] == [
        "First paragraph, a little longer.\n\n",
        "Second one, and some more words.",
    ]
    lines = "line one is here\nline two is here\nline three"
    assert split_text(lines, 20)[0].body == "line one is here\n"
    assert split_text("alpha beta gamma delta", 12)[0].body == "alpha beta "


def test_a_code_block_split_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "".join(f"x = {i}\n" for i in range(30)) + "```\n"
    parts = split_text(code, 60)
    assert len(parts) > 2
    assert parts[0].render().endswith("```")
    assert parts[1].render().startswith("```python\n")
    assert "".join(p.body for p in parts) == code


def test_bytes_never_cut_a_character() -> None:
    text = "世" * 100
    for part in split_text(text, 31, "bytes"):
        part.render().encode("utf-8").decode("utf-8")
        assert len(part.render().encode()) <= 31


def test_paragraph_break_skips_breaks_inside_code() -> None:
    text = "intro paragraph\n\n```\ncode\n\nmore code\n```\n\ntail"
    cut = paragraph_break(text, 0, 5)
    assert cut is not None and text[:cut].endswith("```\n\n")
    assert paragraph_break("short\n\nx", 0, 100) is None


def test_tiny_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 4)
