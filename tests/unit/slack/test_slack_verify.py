"""Slack v0 signatures: the known-answer vector from slack_sdk's own tests and every way to
get it wrong. Spec: https://api.slack.com/authentication/verifying-requests-from-slack"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from adapters.slack.verify import SigningKey, sign, verify_signature
from gateway.platform import VerificationFailed

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TIMESTAMP = "1531420618"
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977008"
    b"85554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c4"
    b"47fce8b6703c"
)
SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
HEADERS = {"x-slack-request-timestamp": TIMESTAMP, "x-slack-signature": SIGNATURE}
NOW = float(TIMESTAMP) + 10
# "1531420618" in fullwidth digits: str.isdigit() and int() accept those; we must not.
FULLWIDTH_TIMESTAMP = "".join(chr(ord(c) + 0xFEE0) for c in TIMESTAMP)


def test_the_known_answer_vector() -> None:
    assert sign(SECRET, TIMESTAMP, BODY) == SIGNATURE
    verify_signature(SECRET, HEADERS, BODY, NOW)


@pytest.mark.parametrize(
    ("headers", "body", "secret", "now"),
    [
        (HEADERS, BODY + b"------", SECRET, NOW),  # tampered body
        (HEADERS, BODY, "wrong-secret", NOW),
        (HEADERS, BODY, SECRET, float(TIMESTAMP) + 301),  # stale
        (HEADERS, BODY, SECRET, float(TIMESTAMP) - 301),  # from the future
        (HEADERS, BODY, SECRET, 1_700_000_000.0),  # "without a mocked clock"
        ({"x-slack-signature": SIGNATURE}, BODY, SECRET, NOW),
        ({"x-slack-request-timestamp": TIMESTAMP}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-request-timestamp": "abc"}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-request-timestamp": "+1531420618"}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-request-timestamp": "9" * 40}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-request-timestamp": FULLWIDTH_TIMESTAMP}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-signature": SIGNATURE.upper()}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-signature": "v0=ü"}, BODY, SECRET, NOW),
        ({**HEADERS, "x-slack-signature": ""}, BODY, SECRET, NOW),
    ],
)
def test_every_bad_request_fails_closed(
    headers: dict[str, str], body: bytes, secret: str, now: float
) -> None:
    with pytest.raises(VerificationFailed):
        verify_signature(secret, headers, body, now)


def test_the_window_is_inclusive_at_300_seconds() -> None:
    verify_signature(SECRET, HEADERS, BODY, float(TIMESTAMP) + 300)
    verify_signature(SECRET, HEADERS, BODY, float(TIMESTAMP) - 300)


@pytest.mark.parametrize(
    "secret",
    [SECRET, "", "k", "x" * 64, "x" * 65, "ключ-é" * 20, b"\x00\xff" * 40],
)
def test_the_prepared_key_is_hmac_sha256(secret: str | bytes) -> None:
    """Short, block-sized, long (hashed first) and non-ASCII secrets, against `hmac`."""
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, b"v0:" + TIMESTAMP.encode() + b":" + BODY, hashlib.sha256)
    assert SigningKey(secret).sign(TIMESTAMP, BODY) == "v0=" + expected.hexdigest()
