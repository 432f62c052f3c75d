"""HTTP-mode request signing.

DingTalk signs robot callbacks with two headers (open.dingtalk.com, "接收消息" /
help.dingtalk.io/open/development/receive-message):

- `timestamp`: milliseconds since the epoch, as a string;
- `sign`: base64(HMAC-SHA256(key=appSecret, msg=timestamp + "\\n" + appSecret)).

A request whose timestamp is more than one hour away from now, or whose sign does not match,
is invalid. The sign covers only the timestamp, not the body: a captured pair would carry any
body for as long as its timestamp is valid. So each sign is accepted once (`replay.py`, a
store claim made after this pure check), and the sessionWebhook host check bounds where
answers go. Stream mode has no request signing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.platform import VerificationFailed

WINDOW_MS = 3600 * 1000
_MAX_TIMESTAMP_DIGITS = 16  # ms until the year 318857; anything longer is garbage
_SIGN_BYTES = 32  # an HMAC-SHA256 digest
_CLOCK_MARGIN_S = 60.0  # instances' clocks differ a little: hold a used sign a bit longer


@dataclass(frozen=True, slots=True)
class Signed:
    """What a valid signature vouches for."""

    timestamp_ms: int
    # The sign in its one canonical spelling (base64 has a few for the same digest), so
    # "accepted once" cannot be dodged by respelling it.
    sign: str

    def valid_for(self, now_ms: int) -> float:
        """Seconds until the timestamp leaves the window (plus a margin): how long a used
        sign must be remembered."""
        return max(0.0, (self.timestamp_ms + WINDOW_MS - now_ms) / 1000) + _CLOCK_MARGIN_S


def compute_sign(secret: str, timestamp: str) -> str:
    """The `sign` header DingTalk sends for `timestamp` (standard base64, not URL-encoded)."""
    message = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    headers: Mapping[str, str], secret: str, *, now_ms: int | None = None
) -> Signed:
    """Raise `VerificationFailed` unless `headers` (looked up by lower-case name) carry a
    fresh, valid sign. Side-effect free; every failure is a 401, never an exception of
    another kind."""
    timestamp = headers.get("timestamp")
    sign = headers.get("sign")
    if not timestamp or not sign:
        raise VerificationFailed("missing timestamp or sign header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise VerificationFailed("malformed timestamp header")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - int(timestamp)) > WINDOW_MS:
        raise VerificationFailed("stale timestamp (more than 1 hour away)")
    try:
        given = base64.b64decode(sign.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise VerificationFailed("malformed sign header") from None
    if len(given) != _SIGN_BYTES:
        raise VerificationFailed("malformed sign header")
    canonical = compute_sign(secret, timestamp)
    if not hmac.compare_digest(given, base64.b64decode(canonical)):
        raise VerificationFailed("sign mismatch")
    return Signed(int(timestamp), canonical)
