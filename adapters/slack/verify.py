"""Slack request signing (v0).

Spec: https://api.slack.com/authentication/verifying-requests-from-slack
`X-Slack-Signature = "v0=" + hex(HMAC-SHA256(signing_secret, "v0:" + ts + ":" + raw_body))`,
with `X-Slack-Request-Timestamp` within 300 s of now in either direction.

Pure and fail-closed: any missing, malformed or mismatching input raises
`VerificationFailed`; nothing else ever escapes (slack_sdk itself raises a ValueError on a
timestamp of `abc`, which a naive server turns into a 500).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from adapters.base import VerificationFailed

MAX_SKEW_S = 300


def sign(signing_secret: str | bytes, timestamp: str, body: bytes) -> str:
    if isinstance(signing_secret, str):
        signing_secret = signing_secret.encode()
    base = b"".join((b"v0:", timestamp.encode("ascii"), b":", body))
    return "v0=" + hmac.digest(signing_secret, base, "sha256").hex()


def verify_signature(
    signing_secret: str | bytes, headers: Mapping[str, str], body: bytes, now: float
) -> None:
    """Raise `VerificationFailed` unless the request is signed with `signing_secret`.

    `headers` is looked up by lower-case name (the edge passes a case-insensitive mapping)."""
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        raise VerificationFailed("missing Slack signature headers")
    # ASCII digits only, bounded: int() would accept " 12", "+12", fullwidth digits and huge inputs.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise VerificationFailed("malformed X-Slack-Request-Timestamp")
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        raise VerificationFailed("stale X-Slack-Request-Timestamp")
    expected = sign(signing_secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise VerificationFailed("bad X-Slack-Signature")
