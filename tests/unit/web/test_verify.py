"""The web chat's token check: only HS256 under the bot's secret, with exp, and a sub."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from adapters.web.verify import (
    LEEWAY_S,
    MAX_TOKEN_CHARS,
    WebUser,
    anonymous_user,
    verify_token,
)
from gateway.platform import VerificationFailed
from tests.fakes.web import SECRET, b64url, mint

KEY = SECRET.encode()


def check(token: str | None, now: float | None = None) -> WebUser:
    return verify_token(KEY, token, time.time() if now is None else now)


def test_a_token_signed_with_the_secret_names_its_user() -> None:
    assert check(mint("alice@example.com", name="Alice")) == WebUser("alice@example.com", "Alice")
    assert check(mint("u-2")) == WebUser("u-2", "")
    assert check(mint("u 3", name="  Ada  ")).name == "Ada"


def test_the_rfc_7515_hs256_example_verifies() -> None:
    # RFC 7515 appendix A.1: the example JWS and its key. It has no `sub`, so a good
    # signature gets as far as the claims check; one changed character does not.
    key = base64.urlsafe_b64decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow=="
    )
    token = (
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290"
        "Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )
    with pytest.raises(VerificationFailed, match="sub"):
        verify_token(key, token, 1300819380 - 60)
    with pytest.raises(VerificationFailed, match="expired"):
        verify_token(key, token, 1300819380 + 3600)
    with pytest.raises(VerificationFailed, match="signature"):
        verify_token(key, token[:-1] + "Y", 1300819380 - 60)


@pytest.mark.parametrize("token", [None, "", "abc", "a.b", "a.b.c.d"])
def test_missing_or_malformed_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(VerificationFailed):
        check(token)


def test_a_token_signed_with_another_secret_is_forged() -> None:
    with pytest.raises(VerificationFailed, match="signature"):
        check(mint(secret="someone-elses-secret-of-some-length"))


def test_changed_claims_break_the_signature() -> None:
    header, _, signature = mint("u1").split(".")
    claims = b64url(json.dumps({"sub": "admin", "exp": int(time.time()) + 300}).encode())
    with pytest.raises(VerificationFailed, match="signature"):
        check(f"{header}.{claims}.{signature}")


def test_an_expired_token_is_refused_after_the_leeway() -> None:
    token = mint(ttl=-LEEWAY_S - 5)
    with pytest.raises(VerificationFailed, match="expired"):
        check(token)
    assert check(mint(ttl=-LEEWAY_S + 5)).id == "u1"  # a little clock skew is forgiven


@pytest.mark.parametrize("alg", ["none", "None", "HS512", "RS256", "hs256"])
def test_only_hs256_is_accepted_whatever_the_token_says(alg: str) -> None:
    with pytest.raises(VerificationFailed, match="algorithm"):
        check(mint(alg=alg))


def test_alg_none_with_an_empty_signature_is_refused() -> None:
    token = mint(alg="none")
    assert token.endswith(".")
    with pytest.raises(VerificationFailed):
        check(token)


def test_a_header_without_alg_or_with_critical_extensions_is_refused() -> None:
    with pytest.raises(VerificationFailed):
        check(mint(header={"alg": None}))
    with pytest.raises(VerificationFailed, match="critical"):
        check(mint(header={"crit": ["exp"]}))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": None},
        {"exp": "4102444800"},
        {"exp": True},
        {"nbf": time.time() + 3600},
        {"nbf": "soon"},
        {"sub": ""},
        {"sub": "   "},
        {"sub": 42},
        {"sub": "x" * 129},
        {"sub": "line\nbreak"},
        {"name": 7},
        {"name": "n" * 129},
    ],
)
def test_claims_must_be_what_the_gateway_needs(claims: dict[str, object]) -> None:
    with pytest.raises(VerificationFailed):
        check(mint(claims=claims))


def test_a_token_without_sub_or_exp_is_refused() -> None:
    with pytest.raises(VerificationFailed, match="sub"):
        check(mint(None))
    header = mint().split(".")[0]
    no_exp = b64url(json.dumps({"sub": "u1"}).encode())
    signature = b64url(hmac.new(KEY, f"{header}.{no_exp}".encode(), hashlib.sha256).digest())
    with pytest.raises(VerificationFailed, match="exp"):
        check(f"{header}.{no_exp}.{signature}")


def test_padding_and_foreign_alphabets_are_not_base64url() -> None:
    header, claims, signature = mint().split(".")
    for part in ("header", "claims", "signature"):
        padded = {"header": header, "claims": claims, "signature": signature}
        padded[part] += "="
        with pytest.raises(VerificationFailed):
            check(".".join(padded.values()))
    standard = base64.b64encode(b'{"alg":"HS256"}').decode()  # may hold + and /
    with pytest.raises(VerificationFailed):
        check(f"{standard}+/.{claims}.{signature}")


def test_header_and_claims_must_be_json_objects() -> None:
    for header in (b64url(b"[1,2]"), b64url(b"not json"), b64url(b"\xff\xfe")):
        with pytest.raises(VerificationFailed):
            check(f"{header}.{b64url(b'{}')}.{b64url(b'x')}")


def test_an_oversized_token_is_refused_before_any_work() -> None:
    token = mint(claims={"pad": "x" * MAX_TOKEN_CHARS})
    with pytest.raises(VerificationFailed, match="too long"):
        check(token)


@pytest.mark.parametrize("user", ["abcdefgh", "u" + "a1" * 20, "A_b-C_d-1234"])
def test_auth_none_takes_an_id_the_page_made_up(user: str) -> None:
    assert anonymous_user(user) == WebUser(user)


@pytest.mark.parametrize("user", [None, "", "short", "has space..", "x" * 65, "a:b:c:d:e"])
def test_auth_none_refuses_other_ids(user: str | None) -> None:
    with pytest.raises(VerificationFailed):
        anonymous_user(user)
