"""Verify a Feishu/Lark event webhook: decrypt, token, signature, timestamp.

Follows the order of lark-oapi's `EventDispatcherHandler.do` (see
https://open.feishu.cn/document/server-docs/event-subscription-guide/event-subscription-configure-/request-url-configuration-case):

1. a body `{"encrypt": …}` is decrypted with the Encrypt Key (`crypto.decrypt`);
2. the verification token is found by schema: v2 `header.token`, v1 and `url_verification`
   top-level `token`; it must equal ours (constant-time);
3. `url_verification` is answered now: no signature check (Feishu does not sign it);
4. every other event, when an Encrypt Key is set, must carry `X-Lark-Request-Timestamp`,
   `X-Lark-Request-Nonce` and a matching `X-Lark-Signature`. Neither the SDK nor the docs
   bound the timestamp, so we allow ±300 s (the doc names replay protection as a purpose).

Pure and fail closed: a body that is not JSON at all is `MalformedRequest` (400); every other
problem, including a payload that will not decrypt, is `VerificationFailed` (401).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.feishu.crypto import DecryptError, decrypt, signature
from gateway import safejson
from gateway.platform import MalformedRequest, VerificationFailed

MAX_SKEW_S = 300
URL_VERIFICATION = "url_verification"


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed every check: a challenge to echo, or an event payload."""

    payload: dict[str, Any]
    challenge: str | None = None


def event_type(payload: Mapping[str, Any]) -> str:
    """`header.event_type` (schema 2.0), `event.type` (v1), or the top-level `type`."""
    if "schema" in payload:
        header = payload.get("header")
        return safejson.text(header.get("event_type")) if isinstance(header, dict) else ""
    if "uuid" in payload:
        event = payload.get("event")
        return safejson.text(event.get("type")) if isinstance(event, dict) else ""
    return safejson.text(payload.get("type"))


def _token(payload: Mapping[str, Any]) -> object:
    if "schema" in payload:
        header = payload.get("header")
        return header.get("token") if isinstance(header, dict) else None
    return payload.get("token")


def _same(given: object, expected: str) -> bool:
    # surrogatepass: a string that came from anywhere but our JSON parser must not raise.
    return isinstance(given, str) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    )


def open_body(body: bytes, encrypt_key: str | None) -> dict[str, Any]:
    """Parse the body and decrypt it if it is encrypted."""
    try:
        outer = safejson.loads_object(body)
    except safejson.JSONError as exc:
        raise MalformedRequest(f"body is not a JSON object ({exc})") from None
    if "encrypt" not in outer:
        return outer
    if not encrypt_key:
        raise VerificationFailed("encrypted event, but no encrypt_key is configured")
    if not isinstance(outer["encrypt"], str):
        raise VerificationFailed("encrypt is not a string")
    try:
        return safejson.loads_object(decrypt(encrypt_key, outer["encrypt"]))
    except (DecryptError, safejson.JSONError) as exc:
        raise VerificationFailed(f"cannot decrypt the event: {exc}") from None


def check_signature(
    headers: Mapping[str, str], body: bytes, encrypt_key: str | None, now: float
) -> None:
    """The timestamp window and, with an Encrypt Key, `X-Lark-Signature` over the raw body.

    Without an Encrypt Key Feishu signs nothing; a timestamp it sends is still checked."""
    timestamp = headers.get("x-lark-request-timestamp")
    if encrypt_key:
        nonce = headers.get("x-lark-request-nonce")
        given = headers.get("x-lark-signature")
        if not timestamp or nonce is None or not given:
            raise VerificationFailed("missing X-Lark-Request-Timestamp/Nonce/Signature")
        # The nonce is hashed as UTF-8; a header value the edge decoded with escapes (or
        # anything not ASCII, which Feishu never sends) cannot be, so it fails here.
        if not nonce.isascii():
            raise VerificationFailed("malformed X-Lark-Request-Nonce")
    if timestamp is None:
        return
    # ASCII digits only, bounded: int() also takes " 12", "+12" and fullwidth digits.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise VerificationFailed("malformed X-Lark-Request-Timestamp")
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        raise VerificationFailed("stale X-Lark-Request-Timestamp")
    if encrypt_key:
        expected = signature(timestamp, nonce or "", encrypt_key, body).encode("ascii")
        if not hmac.compare_digest(expected, (given or "").encode("utf-8", "replace")):
            raise VerificationFailed("bad X-Lark-Signature")


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    verification_token: str | None,
    encrypt_key: str | None,
    now: float,
) -> Verified:
    """Run every check on one webhook request (`headers` looked up by lower-case name)."""
    payload = open_body(body, encrypt_key)
    # No configured token means nothing can be checked: refuse everything.
    if not verification_token or not _same(_token(payload), verification_token):
        raise VerificationFailed("wrong or missing verification token")
    if "schema" not in payload and payload.get("type") == URL_VERIFICATION:
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            raise MalformedRequest("url_verification without a challenge")
        return Verified(payload, challenge)
    check_signature(headers, body, encrypt_key, now)
    return Verified(payload)
