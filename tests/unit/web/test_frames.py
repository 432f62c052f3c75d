"""The web chat's frames: what the page may send, and what a bad frame costs it."""

from __future__ import annotations

import base64
import json

import pytest

from adapters.web import frames
from adapters.web.frames import BadFrame, ClientFile, ClientMessage, parse_client_frame


def test_a_message_frame() -> None:
    raw = json.dumps({"type": "message", "id": "m-1.a_B", "text": "hello"})
    assert parse_client_frame(raw) == ClientMessage("m-1.a_B", "hello")


def test_a_message_with_files() -> None:
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n rest").decode()
    raw = json.dumps(
        {
            "type": "message",
            "id": "m1",
            "files": [{"name": "a.png", "type": "image/png", "data": data}],
        }
    )
    message = parse_client_frame(raw)
    assert message == ClientMessage(
        "m1", "", (ClientFile("a.png", "image/png", b"\x89PNG\r\n\x1a\n rest"),)
    )


def test_unknown_frame_types_are_ignored_for_newer_pages() -> None:
    assert parse_client_frame('{"type": "typing"}') is None
    assert parse_client_frame('{"no": "type"}') is None


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "{", "1e999999"])
def test_what_is_not_a_json_object_closes_the_socket(raw: str) -> None:
    with pytest.raises(BadFrame) as info:
        parse_client_frame(raw)
    assert info.value.close_code == frames.INVALID_PAYLOAD


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "text": "no id"},
        {"type": "message", "id": "", "text": "x"},
        {"type": "message", "id": "has:colon", "text": "x"},
        {"type": "message", "id": "x" * 65, "text": "x"},
        {"type": "message", "id": 7, "text": "x"},
    ],
)
def test_a_message_needs_a_usable_id(frame: dict[str, object]) -> None:
    with pytest.raises(BadFrame) as info:
        parse_client_frame(json.dumps(frame))
    assert info.value.reply_to is None and info.value.close_code == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"text": ""},
        {"text": "   \n"},
        {"text": 5},
        {"text": "x", "files": "nope"},
        {"text": "x", "files": [1]},
        {"text": "x", "files": [{"name": "a", "type": "text/plain", "data": "!!!"}]},
        {"text": "x", "files": [{"name": "a", "type": "text/plain"}]},
        {"text": "x", "files": [{"name": "a", "type": "t/p", "data": "QQ=="}] * 6},
    ],
)
def test_a_bad_message_is_answered_with_an_error_for_its_id(extra: dict[str, object]) -> None:
    with pytest.raises(BadFrame) as info:
        parse_client_frame(json.dumps({"type": "message", "id": "m9", **extra}))
    assert info.value.reply_to == "m9" and info.value.close_code == 0


def test_server_frames_have_the_contract_shape() -> None:
    assert frames.update("m1", "so far") == {
        "type": "update",
        "reply_to": "m1",
        "text": "so far",
        "status": "",
    }
    assert frames.final("m1", "done") == {"type": "final", "reply_to": "m1", "text": "done"}
    assert frames.error(None, "no") == {"type": "error", "reply_to": None, "message": "no"}
    assert json.loads(frames.encode(frames.final("m1", "中文"))) == frames.final("m1", "中文")
    assert "中文" in frames.encode(frames.final("m1", "中文"))  # UTF-8 on the wire, not \\u escapes


# --- clicks --------------------------------------------------------------------------------


def test_clicks_parse_into_what_they_name() -> None:
    parse = frames.parse_client_frame
    assert parse('{"type": "feedback", "id": "c1", "reply_to": "m1", "rating": "like"}') == (
        frames.ClientClick("c1", "feedback", "m1", "like")
    )
    assert parse('{"type": "feedback", "id": "c1", "reply_to": "m1", "rating": null}') == (
        frames.ClientClick("c1", "feedback", "m1", "")
    )
    assert parse('{"type": "suggestion", "id": "c2", "reply_to": "m1", "index": 2}') == (
        frames.ClientClick("c2", "suggestion", "m1", "2")
    )
    assert parse('{"type": "stop", "id": "s1"}') == frames.ClientClick("s1", "stop", "", "")


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "feedback", "reply_to": "m1", "rating": "like"}',
        '{"type": "feedback", "id": "c:1", "reply_to": "m1", "rating": "like"}',
        '{"type": "feedback", "id": "c1", "rating": "like"}',
        '{"type": "feedback", "id": "c1", "reply_to": "m1", "rating": "love"}',
        '{"type": "feedback", "id": "c1", "reply_to": "m1", "rating": 1}',
        '{"type": "suggestion", "id": "c1", "reply_to": "m1", "index": -1}',
        '{"type": "suggestion", "id": "c1", "reply_to": "m1", "index": true}',
        '{"type": "suggestion", "id": "c1", "reply_to": "m1"}',
        '{"type": "stop", "id": "c1", "reply_to": "a:b"}',
    ],
)
def test_a_malformed_click_is_a_bad_frame(raw: str) -> None:
    with pytest.raises(frames.BadFrame):
        frames.parse_client_frame(raw)
