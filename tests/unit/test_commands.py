"""Which messages are commands: the whole message, whatever its case and surrounding
spaces; anything longer or different is a question."""

from __future__ import annotations

import pytest

from gateway.commands import command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/reset", "/reset"),
        ("/STOP", "/stop"),
        ("  /Help \n", "/help"),
        ("\t/stop" + " " * 500, "/stop"),
    ],
)
def test_a_whole_message_that_is_a_command(text: str, expected: str) -> None:
    assert command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "/stopp",
        "/ stop",
        "stop",
        "please /stop",
        "/stop now",
        "/reset" + "x" * 5000,
        "é" * 10_000,
    ],
)
def test_anything_else_is_no_command(text: str) -> None:
    assert command(text) is None
