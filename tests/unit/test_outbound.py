"""The one outbound path for platform API calls: Retry-After parsing, network errors without
URLs, rate limits, and the one retry after an expired token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from adapters.tokens import SharedToken
from gateway.outbound import Answer, JsonApi, TokenSource, json_object, retry_after, with_token
from gateway.platform import PlatformError, RateLimited
from gateway.store import keys
from gateway.store.memory import MemoryStore

SECRET_URL = "https://api.example.test/send?access_token=SECRET-TOKEN"


@pytest.mark.parametrize(
    ("headers", "default", "minimum", "expected"),
    [
        ({}, 1.0, 0.0, 1.0),
        ({"Retry-After": "7"}, 1.0, 0.0, 7.0),
        ({"retry-after": "0.5"}, 60.0, 0.0, 0.5),
        ({"Retry-After": "0"}, 1.0, 0.0, 0.0),
        ({"Retry-After": "0"}, 1.0, 1.0, 1.0),
        ({"Retry-After": "-3"}, 1.0, 0.0, 0.0),
        ({"Retry-After": ""}, 60.0, 0.0, 60.0),
        ({"Retry-After": "soon"}, 60.0, 0.0, 60.0),
        ({"Retry-After": "nan"}, 2.0, 0.0, 2.0),
        ({"Retry-After": "inf"}, 2.0, 0.0, 2.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1.0, 0.0, 1.0),
        ({"Retry-After": " 3 "}, 1.0, 0.0, 3.0),
    ],
)
def test_retry_after(
    headers: dict[str, str], default: float, minimum: float, expected: float
) -> None:
    assert retry_after(httpx.Headers(headers), default, minimum=minimum) == expected


def test_retry_after_reads_the_named_header_only() -> None:
    headers = httpx.Headers({"Retry-After": "9", "X-Ogw-Ratelimit-Reset": "4"})
    assert retry_after(headers, 1.0, header="x-ogw-ratelimit-reset") == 4.0
    assert (
        retry_after(httpx.Headers({"Retry-After": "9"}), 1.0, header="x-ogw-ratelimit-reset") == 1.0
    )


def test_json_object() -> None:
    assert json_object(b'{"ok": true}') == {"ok": True}
    for content in (b"", b"<html>bad gateway</html>", b"[1, 2]", b'"text"', b"\xff\xfe"):
        assert json_object(content) is None


# --- JsonApi -------------------------------------------------------------------------------


def _check(answer: Answer) -> dict[str, Any]:
    if answer.status >= 400:
        raise PlatformError("test", f"http_{answer.status}", answer.what)
    if answer.body is None:
        raise PlatformError("test", "invalid_json", answer.what)
    if answer.body.get("errcode", 0) != 0:
        raise PlatformError("test", str(answer.body["errcode"]), answer.what)
    return answer.body


API = JsonApi(
    "test",
    _check,
    error_code=lambda body: body.get("errcode"),
    rate_limit_codes={45009: 60.0, "slow_down": None},
    default_wait=2.0,
    http_429_code="http_429",
)


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_a_good_answer_is_its_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"errcode": 0, "value": 1})

    async with _client(handler) as http:
        body = await API.send(http, "POST", SECRET_URL, what="send", json={"a": 1})
    assert body == {"errcode": 0, "value": 1}
    assert seen[0].method == "POST" and seen[0].content == b'{"a":1}'


async def test_a_network_error_never_carries_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    async with _client(handler) as http:
        with pytest.raises(PlatformError) as caught:
            await API.send(http, "GET", SECRET_URL, what="send")
    error = caught.value
    assert (error.platform, error.code, error.detail) == ("test", "network", "send: ConnectError")
    assert "SECRET" not in str(error) and "example.test" not in str(error)
    # Not chained either, so no logged traceback shows the httpx message.
    assert error.__cause__ is None and error.__suppress_context__


async def test_a_timeout_is_a_network_error_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with _client(handler) as http:
        with pytest.raises(PlatformError, match="network") as caught:
            await API.send(http, "GET", SECRET_URL, what="user/get")
    assert caught.value.detail == "user/get: ReadTimeout"


@pytest.mark.parametrize(
    ("response", "wait", "code"),
    [
        (httpx.Response(429), 2.0, "http_429"),
        (httpx.Response(429, headers={"Retry-After": "7"}), 7.0, "http_429"),
        (httpx.Response(429, text="<html>too many</html>"), 2.0, "http_429"),
        # A platform code with a fixed wait ignores the header.
        (httpx.Response(200, json={"errcode": 45009}, headers={"Retry-After": "3"}), 60.0, "45009"),
        # A platform code without one waits what the header says, else the default.
        (
            httpx.Response(200, json={"errcode": "slow_down"}, headers={"Retry-After": "3"}),
            3.0,
            "slow_down",
        ),
        (httpx.Response(400, json={"errcode": "slow_down"}), 2.0, "slow_down"),
        # A 429 is named by the platform's rate-limit code when the body has one.
        (httpx.Response(429, json={"errcode": 45009}), 60.0, "45009"),
    ],
)
async def test_rate_limits_are_rate_limited(
    response: httpx.Response, wait: float, code: str
) -> None:
    async with _client(lambda request: response) as http:
        with pytest.raises(RateLimited) as caught:
            await API.send(http, "POST", SECRET_URL, what="send")
    assert (caught.value.platform, caught.value.retry_after, caught.value.code) == (
        "test",
        wait,
        code,
    )


def test_the_minimum_wait_applies_to_the_header() -> None:
    api = JsonApi("test", _check, minimum_wait=1.0)
    with pytest.raises(RateLimited) as caught:
        api.read(429, httpx.Headers({"Retry-After": "0"}), b"", "send")
    assert caught.value.retry_after == 1.0 and caught.value.code == "rate_limited"


@pytest.mark.parametrize(
    ("status", "content", "code"),
    [
        (502, b"bad gateway", "http_502"),
        (200, b"<html>proxy error</html>", "invalid_json"),
        (200, b'{"errcode": 40001}', "40001"),
        # A code that cannot be a rate-limit key (a list) is just the checker's business.
        (200, b'{"errcode": [45009]}', "[45009]"),
    ],
)
def test_other_answers_go_to_the_checker(status: int, content: bytes, code: str) -> None:
    with pytest.raises(PlatformError) as caught:
        API.read(status, httpx.Headers(), content, "media/get")
    assert caught.value.code == code and not isinstance(caught.value, RateLimited)
    assert "media/get" in str(caught.value)


# --- with_token ----------------------------------------------------------------------------


class Tokens:
    """A token source that hands out t1, t2, … and records what was invalidated."""

    def __init__(self) -> None:
        self.issued = 0
        self.current: str | None = None
        self.invalidated: list[str] = []

    async def get(self) -> str:
        if self.current is None:
            self.issued += 1
            self.current = f"t{self.issued}"
        return self.current

    async def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        if self.current == token:
            self.current = None


def _expired(exc: PlatformError) -> bool:
    return exc.code == "expired"


class Attempts:
    """An attempt that fails with the given errors, in order, then answers its token."""

    def __init__(self, *errors: PlatformError) -> None:
        self.errors = list(errors)
        self.tokens: list[str] = []

    async def __call__(self, token: str) -> str:
        self.tokens.append(token)
        if self.errors:
            raise self.errors.pop(0)
        return f"done with {token}"


async def test_a_good_token_is_used_once() -> None:
    tokens, attempt = Tokens(), Attempts()
    assert await with_token(tokens, attempt, rejected=_expired) == "done with t1"
    assert attempt.tokens == ["t1"] and tokens.invalidated == []


async def test_an_expired_token_is_refreshed_exactly_once() -> None:
    tokens, attempt = Tokens(), Attempts(PlatformError("test", "expired"))
    assert await with_token(tokens, attempt, rejected=_expired) == "done with t2"
    assert attempt.tokens == ["t1", "t2"]
    assert tokens.invalidated == ["t1"] and tokens.issued == 2


async def test_a_second_expiry_is_raised() -> None:
    expired = PlatformError("test", "expired")
    tokens, attempt = Tokens(), Attempts(expired, expired, expired)
    with pytest.raises(PlatformError) as caught:
        await with_token(tokens, attempt, rejected=_expired)
    assert caught.value.code == "expired"
    assert attempt.tokens == ["t1", "t2"] and tokens.invalidated == ["t1"]


async def test_a_rate_limit_is_never_an_expired_token() -> None:
    tokens, attempt = Tokens(), Attempts(RateLimited("test", 5.0, "expired"))
    with pytest.raises(RateLimited):
        await with_token(tokens, attempt, rejected=lambda exc: True)
    assert attempt.tokens == ["t1"] and tokens.invalidated == []


async def test_other_errors_keep_the_token() -> None:
    tokens, attempt = Tokens(), Attempts(PlatformError("test", "no_permission"))
    with pytest.raises(PlatformError, match="no_permission"):
        await with_token(tokens, attempt, rejected=_expired)
    assert attempt.tokens == ["t1"] and tokens.invalidated == []


async def test_a_failing_token_fetch_is_not_retried() -> None:
    class Broken(Tokens):
        async def get(self) -> str:
            raise PlatformError("test", "40001", "the app secret is wrong")

    attempt = Attempts()
    with pytest.raises(PlatformError, match="40001"):
        await with_token(Broken(), attempt, rejected=lambda exc: True)
    assert attempt.tokens == []


async def test_the_shared_token_is_a_token_source() -> None:
    fetched: list[int] = []

    async def fetch() -> tuple[str, float]:
        fetched.append(1)
        return f"s{len(fetched)}", 7200.0

    tokens: TokenSource = SharedToken(MemoryStore(), keys.platform_token("test", "app"), fetch)
    attempt = Attempts(PlatformError("test", "expired"))
    assert await with_token(tokens, attempt, rejected=_expired) == "done with s2"
    assert attempt.tokens == ["s1", "s2"] and len(fetched) == 2


def test_json_object_reads_utf16_too() -> None:
    assert json_object('{"code": 0}'.encode("utf-16")) == {"code": 0}
