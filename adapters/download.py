"""Reading a file a user sent, once for every platform.

Bounded, so a huge or hostile file cannot exhaust memory; network failures become the
platform's typed `PlatformError`; redirects are followed by hand (`follow`), so every hop is
checked before anything (a token, a cookie) goes to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gateway.outbound import network_error
from gateway.platform import PlatformError

MAX_REDIRECTS = 3


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: httpx.Headers
    data: bytes
    url: httpx.URL

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type", "application/octet-stream")
        return value.split(";")[0].strip() or "application/octet-stream"

    def redirect(self) -> str | None:
        """The absolute URL a redirect points at, if this is one."""
        location = self.headers.get("location")
        if 300 <= self.status < 400 and location:
            return str(self.url.join(location))
        return None


async def fetch(
    http: httpx.AsyncClient,
    url: str,
    *,
    platform: str,
    what: str,
    max_bytes: int,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """One GET. The body is read unless it is a redirect; past `max_bytes` it is refused."""
    try:
        async with http.stream("GET", url, params=params, headers=headers) as response:
            data = bytearray()
            if not response.is_redirect:
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise PlatformError(platform, "file_too_large", what)
    except httpx.HTTPError as exc:
        # Never the URL in the message: some platforms put tokens in query strings.
        raise network_error(platform, what, exc) from None
    return Fetched(response.status_code, response.headers, bytes(data), response.url)


async def follow(
    http: httpx.AsyncClient,
    url: str,
    *,
    platform: str,
    what: str,
    max_bytes: int,
    allowed: Callable[[str], bool] = lambda url: True,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """GET, following redirects by hand; `allowed(url)` is checked before every hop."""
    for _ in range(MAX_REDIRECTS + 1):
        if not allowed(url):
            raise PlatformError(platform, "foreign_file_host", urlsplit(url).hostname or "")
        fetched = await fetch(
            http, url, platform=platform, what=what, max_bytes=max_bytes, headers=headers
        )
        location = fetched.redirect()
        if location is None:
            return fetched
        url = location
    raise PlatformError(platform, "too_many_redirects", what)
