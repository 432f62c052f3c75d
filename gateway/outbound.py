"""Platform API calls, written once: network errors, rate limits, and expired tokens.

Every platform answers in JSON and says "slow down" and "bad token" its own way, but the
handling is the same, so it lives here (one place maps API errors, as aiogram's
`BaseSession.check_response` does) and each adapter only describes its platform:

- `JsonApi`: how one platform answers. `send()` makes the request on the shared client,
  turns a network failure into `PlatformError(platform, "network", "<what>: <ExcType>")`,
  raises `RateLimited` for HTTP 429 or one of the platform's rate-limit codes, and leaves
  the rest of the body to the adapter's `check`.
- `with_token()`: run a call with an access token; if the platform rejected the token, drop
  it, fetch a new one and try exactly once more.
- `retry_after()`: the wait a Retry-After-like header asks for.

No URL ever goes into an error: URLs carry access tokens (WeCom's query string) or are
credentials themselves (a DingTalk sessionWebhook, a WeCom AI bot response_url).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from gateway.platform import PlatformError, RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")
Body = dict[str, Any]

# Failed platform calls of this process by (platform, code): every error below is made here,
# so this is the one place that counts them (`dify_gateway_platform_api_errors_total`).
ERRORS: Counter[tuple[str, str]] = Counter()
MAX_CODE = 64  # codes come from platform answers; a longer one is cut, never a new label


def counted(error: PlatformError) -> PlatformError:
    """`error`, counted in `ERRORS`."""
    ERRORS[(error.platform, error.code[:MAX_CODE])] += 1
    return error


def retry_after(
    headers: Mapping[str, str],
    default: float,
    *,
    header: str = "retry-after",
    minimum: float = 0.0,
) -> float:
    """The seconds to wait that `header` asks for (pass `httpx.Headers` to match it without
    regard to case): `default` when it is missing or not a finite number, never below
    `minimum`. HTTP-date values are not used by any platform here, so they count as junk."""
    raw = headers.get(header)
    try:
        wait = float(raw) if raw is not None else default
    except ValueError:
        wait = default
    if not math.isfinite(wait):
        wait = default
    return max(minimum, wait)


def network_error(platform: str, what: str, exc: httpx.HTTPError) -> PlatformError:
    """The error for a failed exchange: named by `what`, carrying only the exception's type
    (httpx messages can carry the URL). Raise it `from None` so no traceback shows the
    original either."""
    return counted(PlatformError(platform, "network", f"{what}: {type(exc).__name__}"))


def json_object(content: bytes) -> Body | None:
    """The JSON object in `content`, or None when it is not one (HTML from a proxy, empty)."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        try:  # orjson reads UTF-8 only; JSON may also come as UTF-16 or UTF-32
            body = json.loads(content)
        except ValueError:
            return None
    return body if isinstance(body, dict) else None


@dataclass(frozen=True, slots=True)
class Answer:
    """One platform answer, as an adapter's `check` sees it."""

    status: int
    headers: httpx.Headers
    body: Body | None  # the JSON object, or None when the answer was not one
    what: str  # names the call in errors, instead of its URL


def _no_code(body: Body) -> None:
    return None


@dataclass(frozen=True, slots=True)
class JsonApi:
    """How one platform's JSON API answers.

    - `check(answer)` maps an answer that is not a rate limit to its body or a typed error
      (`ok:false`, a non-zero `code`/`errcode`, an HTTP error status);
    - `error_code(body)` reads the body's error code; when it is a key of
      `rate_limit_codes` the call was throttled, and the value is the fixed wait in seconds,
      or None to read `wait_header` as for an HTTP 429;
    - an HTTP 429 waits what `wait_header` says, else `default_wait`, never under
      `minimum_wait`; its code is the body's rate-limit code if it has one, else
      `http_429_code`.
    """

    platform: str
    check: Callable[[Answer], Body]
    error_code: Callable[[Body], object] = _no_code
    rate_limit_codes: Mapping[str | int, float | None] = field(default_factory=dict)
    wait_header: str = "retry-after"
    default_wait: float = 1.0
    minimum_wait: float = 0.0
    http_429_code: str = "rate_limited"

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str,
        url: str | httpx.URL,
        *,
        what: str,
        **request: Any,
    ) -> Body:
        """One request (`request` goes to `httpx.AsyncClient.request`), read by `read`."""
        try:
            response = await http.request(method, url, **request)
        except httpx.HTTPError as exc:
            raise network_error(self.platform, what, exc) from None
        return self.read(response.status_code, response.headers, response.content, what)

    def read(self, status: int, headers: httpx.Headers, content: bytes, what: str) -> Body:
        """Map an answer (also one fetched another way, such as a download's error body) to
        its JSON body or a typed error."""
        answer = Answer(status, headers, json_object(content), what)
        code = self.error_code(answer.body) if answer.body is not None else None
        self.raise_if_limited(status, headers, code)
        try:
            return self.check(answer)
        except PlatformError as exc:
            counted(exc)
            raise

    def raise_if_limited(self, status: int, headers: httpx.Headers, code: object = None) -> None:
        """Raise `RateLimited` if `status` is 429 or `code` is one of the rate-limit codes."""
        # A JSON code may be anything, even a list: only a str or int can be one of ours.
        if isinstance(code, str | int) and code in self.rate_limit_codes:
            fixed = self.rate_limit_codes[code]
            wait = fixed if fixed is not None else self.wait(headers)
            raise counted(RateLimited(self.platform, wait, str(code)))
        if status == 429:
            raise counted(RateLimited(self.platform, self.wait(headers), self.http_429_code))

    def wait(self, headers: httpx.Headers) -> float:
        return retry_after(
            headers, self.default_wait, header=self.wait_header, minimum=self.minimum_wait
        )


class TokenSource(Protocol):
    """An access token shared by the calls of one app (`adapters/tokens.py` `SharedToken`)."""

    async def get(self) -> str: ...

    async def invalidate(self, token: str) -> None: ...


async def with_token(
    tokens: TokenSource,
    attempt: Callable[[str], Awaitable[T]],
    *,
    rejected: Callable[[PlatformError], bool],
) -> T:
    """`attempt(token)`; when it fails with an error that `rejected` says means the token
    went bad (expired early, revoked, the secret was reset), drop that token, fetch a new
    one and try once more. A second rejection is raised; a rate limit never counts as one."""
    token = await tokens.get()
    try:
        return await attempt(token)
    except PlatformError as exc:
        if isinstance(exc, RateLimited) or not rejected(exc):
            raise
        log.info("%s access token rejected (%s); fetching a new one", exc.platform, exc.code)
    await tokens.invalidate(token)
    return await attempt(await tokens.get())
