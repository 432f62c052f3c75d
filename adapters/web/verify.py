"""Who is talking: a JSON Web Token (RFC 7519) that the embedding site signs for its user.

Only HS256 (JWS, RFC 7515, with HMAC-SHA256 under the bot's `signing_secret`) is accepted:
the algorithm is ours to choose, never the token's, so `alg: none` and every other
algorithm are refused before the signature is even looked at. Claims: `sub` (the user id,
required), `name` (a display name, optional) and `exp` (required; a token for ever is a
token that leaks for ever), with `nbf` honoured when present.

Pure and fail closed: anything missing, malformed, oversized, forged or expired raises
`VerificationFailed` (the edge answers 401 before any upgrade); nothing else escapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac  # compare_digest
import re
from dataclasses import dataclass
from typing import Any

from gateway import safejson
from gateway.platform import VerificationFailed

MAX_TOKEN_CHARS = 4096
MAX_CLAIM_CHARS = 128  # sub and name
LEEWAY_S = 30.0  # clock skew between the embedding site and the gateway
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")  # unpadded, as JWS writes it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# `auth: none`: the page makes up a random id per browser (adapters/web/page.js).
ANONYMOUS_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True, slots=True)
class WebUser:
    id: str
    name: str = ""


def verify_token(secret: bytes, token: str | None, now: float) -> WebUser:
    """The user an HS256 token names, if it is signed with `secret` and valid at `now`."""
    if not token:
        raise VerificationFailed("no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise VerificationFailed("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationFailed("not a JWS compact token")
    header_part, claims_part, signature_part = parts
    header = _json_object(header_part, "header")
    if header.get("alg") != "HS256":
        raise VerificationFailed(f"algorithm {safejson.shown(header.get('alg'))} is not accepted")
    if "crit" in header:  # extensions the token says must be understood: we understand none
        raise VerificationFailed("critical header extensions are not supported")
    signed = f"{header_part}.{claims_part}".encode("ascii")
    expected = hmac.new(secret, signed, hashlib.sha256).digest()
    if not hmac.compare_digest(_decode(signature_part, "signature"), expected):
        raise VerificationFailed("bad signature")
    return _user(_json_object(claims_part, "claims"), now)


def anonymous_user(user_id: str | None) -> WebUser:
    """`auth: none`: the id the page chose, if it looks like one the page makes up."""
    if not user_id or not ANONYMOUS_ID.fullmatch(user_id):
        raise VerificationFailed("auth: none needs ?user=<8 to 64 of A-Z a-z 0-9 _ ->")
    return WebUser(user_id)


def _user(claims: dict[str, Any], now: float) -> WebUser:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise VerificationFailed("exp missing or not a number")
    if now > exp + LEEWAY_S:
        raise VerificationFailed("token expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or now + LEEWAY_S < nbf):
        raise VerificationFailed("token not valid yet")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _readable(sub):
        raise VerificationFailed("sub missing, empty, too long or not printable")
    name = claims.get("name", "")
    if not isinstance(name, str) or (name and not _readable(name)):
        raise VerificationFailed("name too long or not printable")
    return WebUser(sub, name.strip())


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _readable(text: str) -> bool:
    return 0 < len(text) <= MAX_CLAIM_CHARS and text.strip() != "" and not _CONTROL.search(text)


def _decode(part: str, what: str) -> bytes:
    if not _BASE64URL.fullmatch(part) or len(part) % 4 == 1:
        raise VerificationFailed(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise VerificationFailed(f"{what} is not unpadded base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    # safejson: a signed `sub` holding a lone surrogate would otherwise become a user id
    # that breaks the first store key or job JSON built from it.
    try:
        return safejson.loads_object(_decode(part, what))
    except safejson.JSONError:
        raise VerificationFailed(f"{what} is not a JSON object") from None
