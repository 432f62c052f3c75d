"""The web chat on hostile input (issue 14, defect 2): any text a socket or a token carries is
data. A frame is a message, ignored, or a `BadFrame`; a token is a user or
`VerificationFailed`; nothing else escapes, and nothing unfit for the inbox gets in."""

from __future__ import annotations

import json
import time

import pytest

from adapters.web import frames
from adapters.web.frames import BadFrame, parse_client_frame
from adapters.web.verify import verify_token
from gateway.platform import VerificationFailed
from tests.fakes.web import SECRET, mint

KEY = SECRET.encode()


@pytest.mark.parametrize(
    "raw",
    [
        # A lone surrogate, escaped: the std json module returned it, and the job's JSON in
        # the inbox then failed to encode (PydanticSerializationError on the read path).
        '{"type": "message", "id": "m1", "text": "hi \\ud800"}',
        '{"type": "message", "id": "m1", "text": "x", "files": [{"name": "\\udfff",'
        ' "type": "text/plain", "data": "QQ=="}]}',
        "[" * 100_000,
        '{"type": "message", "id": "m1", "text": ' + "[" * 70 + "]" * 70 + "}",
        "\ud800",  # a str no socket delivers, but a parser must not care
    ],
)
def test_frames_that_are_not_plain_json_data_close_the_socket(raw: str) -> None:
    with pytest.raises(BadFrame) as info:
        parse_client_frame(raw)
    assert info.value.close_code == frames.INVALID_PAYLOAD


@pytest.mark.parametrize("data", [{"a": 1}, ["QQ=="], 12345, True])
def test_file_data_must_be_a_base64_string(data: object) -> None:
    raw = json.dumps(
        {"type": "message", "id": "m1", "files": [{"name": "a", "type": "t/p", "data": data}]}
    )
    with pytest.raises(BadFrame) as info:
        parse_client_frame(raw)
    assert info.value.reply_to == "m1" and info.value.close_code == 0


@pytest.mark.parametrize("sub", ["\ud800", "u\udc80x"])
def test_a_validly_signed_token_with_a_lone_surrogate_names_no_user(sub: str) -> None:
    token = mint(sub)  # json.dumps escapes it: the token itself is plain ASCII
    with pytest.raises(VerificationFailed, match="claims is not a JSON object"):
        verify_token(KEY, token, time.time())


def test_a_deeply_nested_alg_is_refused_with_a_short_reason() -> None:
    deep: object = "HS256"
    for _ in range(60):
        deep = [deep]
    with pytest.raises(VerificationFailed) as info:
        verify_token(KEY, mint(header={"alg": deep}), time.time())
    assert str(info.value) == "algorithm <array> is not accepted"
