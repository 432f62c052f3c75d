"""HTTP-mode sign check: the self-generated vector, and every way a request can be bad."""

from __future__ import annotations

import pytest

from adapters.dingtalk.verify import WINDOW_MS, compute_sign, verify_signature
from gateway.platform import VerificationFailed

SECRET = "test_app_secret"
TIMESTAMP = "1700000000000"
SIGN = "xe0JT7wpvLtClhhu571vw8bYvd9RpJAPhs9kSmT+LM8="  # self-generated: DingTalk publishes none
NOW = 1700000000000


def test_known_answer_vector() -> None:
    assert compute_sign(SECRET, TIMESTAMP) == SIGN


def test_valid_request_passes() -> None:
    verify_signature({"timestamp": TIMESTAMP, "sign": SIGN}, SECRET, now_ms=NOW)


def test_window_is_one_hour_both_ways() -> None:
    headers = {"timestamp": TIMESTAMP, "sign": SIGN}
    verify_signature(headers, SECRET, now_ms=NOW + WINDOW_MS)
    verify_signature(headers, SECRET, now_ms=NOW - WINDOW_MS)


@pytest.mark.parametrize("now", [NOW + WINDOW_MS + 1, NOW - WINDOW_MS - 1, NOW + 86_400_000])
def test_stale_timestamp_is_rejected(now: int) -> None:
    with pytest.raises(VerificationFailed, match="stale"):
        verify_signature({"timestamp": TIMESTAMP, "sign": SIGN}, SECRET, now_ms=now)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(VerificationFailed, match="mismatch"):
        verify_signature({"timestamp": TIMESTAMP, "sign": SIGN}, "another_secret", now_ms=NOW)


def test_sign_for_another_timestamp_is_rejected() -> None:
    other = compute_sign(SECRET, "1700000000001")
    with pytest.raises(VerificationFailed, match="mismatch"):
        verify_signature({"timestamp": TIMESTAMP, "sign": other}, SECRET, now_ms=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"timestamp": TIMESTAMP},
        {"sign": SIGN},
        {"timestamp": "", "sign": SIGN},
        {"timestamp": TIMESTAMP, "sign": ""},
    ],
)
def test_missing_headers_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(VerificationFailed, match="missing"):
        verify_signature(headers, SECRET, now_ms=NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "-1700000000000",
        "1.7e12",
        " 1700000000000",
        "\uff11\uff17\uff10\uff10",  # full-width digits: isdigit() is true for them
        "17000000000000000000000",
        "abc",
    ],
)
def test_malformed_timestamp_is_rejected(timestamp: str) -> None:
    with pytest.raises(VerificationFailed, match="malformed timestamp"):
        verify_signature({"timestamp": timestamp, "sign": SIGN}, SECRET, now_ms=NOW)


@pytest.mark.parametrize(
    "sign",
    [
        "not base64!",
        SIGN[:-4],  # truncated digest
        SIGN.replace("+", "%2B"),  # URL-encoded: DingTalk never sends it this way
        "é" * 44,
        SIGN + SIGN,
    ],
)
def test_malformed_sign_is_rejected(sign: str) -> None:
    with pytest.raises(VerificationFailed):
        verify_signature({"timestamp": TIMESTAMP, "sign": sign}, SECRET, now_ms=NOW)


def test_tampered_sign_is_rejected() -> None:
    tampered = ("y" if SIGN[0] != "y" else "z") + SIGN[1:]
    with pytest.raises(VerificationFailed, match="mismatch"):
        verify_signature({"timestamp": TIMESTAMP, "sign": tampered}, SECRET, now_ms=NOW)


def test_a_valid_sign_is_returned_in_its_canonical_spelling() -> None:
    """Base64 spells one digest a few ways (the unused low bits of the last character);
    what "accepted once" keys on must be the one spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    respelled = SIGN[:42] + alphabet[alphabet.index(SIGN[42]) ^ 1] + SIGN[43:]
    assert respelled != SIGN
    signed = verify_signature({"timestamp": TIMESTAMP, "sign": respelled}, SECRET, now_ms=NOW)
    assert (signed.sign, signed.timestamp_ms) == (SIGN, int(TIMESTAMP))


def test_a_used_sign_is_remembered_while_its_timestamp_is_valid() -> None:
    signed = verify_signature({"timestamp": TIMESTAMP, "sign": SIGN}, SECRET, now_ms=NOW)
    assert signed.valid_for(NOW) == 3600 + 60  # the window, plus a margin for clocks
    assert signed.valid_for(NOW - WINDOW_MS) == 2 * 3600 + 60  # signed an hour ahead of us
    assert signed.valid_for(NOW + WINDOW_MS) == 60
