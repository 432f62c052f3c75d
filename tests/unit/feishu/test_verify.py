"""Webhook verification: every check, with its negative test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from adapters.feishu import crypto
from adapters.feishu.verify import event_type, verify_webhook
from gateway.platform import MalformedRequest, VerificationFailed
from tests.fakes.feishu import ENCRYPT_KEY, VERIFICATION_TOKEN, message_event, webhook_request

DATA = Path(__file__).parents[2] / "data" / "feishu"
NOW = 1_700_000_000


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _verify(
    body: bytes,
    headers: dict[str, str],
    *,
    key: str | None = ENCRYPT_KEY,
    token: str | None = VERIFICATION_TOKEN,
    now: float = NOW,
):  # type: ignore[no-untyped-def]
    return verify_webhook(body, _lower(headers), verification_token=token, encrypt_key=key, now=now)


def test_encrypted_challenge_is_answered_without_signature_headers() -> None:
    plain = (DATA / "url_verification.json").read_bytes()
    body = json.dumps({"encrypt": crypto.encrypt(ENCRYPT_KEY, plain)}).encode()
    verified = _verify(body, {})
    assert verified.challenge == "ajls384kdj"


def test_plain_challenge_is_answered() -> None:
    verified = _verify((DATA / "url_verification.json").read_bytes(), {}, key=None)
    assert verified.challenge == "ajls384kdj"


def test_challenge_with_wrong_token_is_rejected() -> None:
    body = json.dumps({"challenge": "c", "token": "guess", "type": "url_verification"}).encode()
    with pytest.raises(VerificationFailed):
        _verify(body, {}, key=None)


def test_challenge_without_challenge_string_is_malformed() -> None:
    body = json.dumps({"challenge": 5, "token": VERIFICATION_TOKEN, "type": "url_verification"})
    with pytest.raises(MalformedRequest):
        _verify(body.encode(), {}, key=None)


def test_signed_encrypted_event_passes() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    verified = _verify(body, headers)
    assert verified.challenge is None
    assert event_type(verified.payload) == "im.message.receive_v1"


def test_tampered_body_is_rejected() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    tampered = body.replace(b'{"encrypt": "', b'{"encrypt":  "')
    with pytest.raises(VerificationFailed, match="Signature"):
        _verify(tampered, headers)


def test_wrong_encrypt_key_is_rejected() -> None:
    body, headers = webhook_request(message_event("hi"), encrypt_key="another key", timestamp=NOW)
    with pytest.raises(VerificationFailed):
        _verify(body, headers)


@pytest.mark.parametrize(
    "missing", ["X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature"]
)
def test_missing_signature_headers_are_rejected(missing: str) -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    del headers[missing]
    with pytest.raises(VerificationFailed, match="missing"):
        _verify(body, headers)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_rejected(skew: int) -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW + skew)
    with pytest.raises(VerificationFailed, match="stale"):
        _verify(body, headers)


def test_timestamp_at_the_edge_of_the_window_passes() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW - 300)
    assert _verify(body, headers).challenge is None


@pytest.mark.parametrize(
    "bad", ["+1700000000", " 1700000000", "\uff11\uff17\uff10\uff10", "1e9", "9" * 40, ""]
)
def test_malformed_timestamp_is_rejected(bad: str) -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    headers["X-Lark-Request-Timestamp"] = bad
    with pytest.raises(VerificationFailed):
        _verify(body, headers)


def test_garbled_signature_is_rejected_without_an_exception() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    headers["X-Lark-Signature"] = "ü" * 64
    with pytest.raises(VerificationFailed):
        _verify(body, headers)


def test_wrong_token_in_a_signed_event_is_rejected() -> None:
    body, headers = webhook_request(message_event("hi", token="other"), timestamp=NOW)
    with pytest.raises(VerificationFailed, match="token"):
        _verify(body, headers)


def test_no_configured_token_rejects_everything() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    with pytest.raises(VerificationFailed, match="token"):
        _verify(body, headers, token=None)


def test_undecryptable_body_is_401() -> None:
    body = json.dumps({"encrypt": "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0IQ=="}).encode()
    with pytest.raises(VerificationFailed, match="decrypt"):
        _verify(body, {})


def test_encrypt_that_is_not_a_string_is_401() -> None:
    with pytest.raises(VerificationFailed):
        _verify(b'{"encrypt": 42}', {})


def test_decrypts_to_non_json_is_401() -> None:
    body = json.dumps({"encrypt": crypto.encrypt(ENCRYPT_KEY, b"\xff\xfe not json")}).encode()
    with pytest.raises(VerificationFailed):
        _verify(body, {})


def test_encrypted_body_without_a_configured_key_is_401() -> None:
    body, headers = webhook_request(message_event("hi"), timestamp=NOW)
    with pytest.raises(VerificationFailed, match="encrypt_key"):
        _verify(body, headers, key=None)


@pytest.mark.parametrize("body", [b"not json", b"", b"\xff\xfe", b'{"encrypt": '])
def test_body_that_is_not_json_is_400(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        _verify(body, {})


def test_json_that_is_not_an_object_is_400() -> None:
    with pytest.raises(MalformedRequest):
        _verify(b"[1, 2]", {})


def test_without_encrypt_key_plain_events_pass_on_the_token() -> None:
    body, headers = webhook_request(message_event("hi"), encrypt_key=None)
    assert _verify(body, headers, key=None, now=time.time()).challenge is None


def test_without_encrypt_key_a_stale_timestamp_still_fails() -> None:
    body, _ = webhook_request(message_event("hi"), encrypt_key=None)
    with pytest.raises(VerificationFailed, match="stale"):
        _verify(body, {"X-Lark-Request-Timestamp": str(NOW - 1000)}, key=None)


def test_v1_event_token_is_top_level() -> None:
    payload = json.loads((DATA / "v1_message.json").read_text())
    body, headers = webhook_request(payload, timestamp=NOW)
    verified = _verify(body, headers)
    assert event_type(verified.payload) == "message"
    payload["token"] = "guess"
    body, headers = webhook_request(payload, timestamp=NOW)
    with pytest.raises(VerificationFailed):
        _verify(body, headers)
