"""An httpx transport that sends requests through aiohttp's connection pool.

Why: httpcore 1.0's pool re-scans every connection on each request start and finish, and its
keep-alive check is quadratic (encode/httpcore#1035, still open; the pydantic/httpx2 fork has
the fix). With thousands of Dify streams open at once, that bookkeeping ate most of a core
in our benchmark. aiohttp's connector hands out connections in O(1). Everything above the
transport stays httpx: the same client API in every adapter, `MockTransport` in tests,
httpx's own redirects, timeouts and content decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx


def _httpx_error(
    exc: BaseException, request: httpx.Request, *, connecting: bool
) -> httpx.HTTPError | None:
    """aiohttp's exception as the httpx exception callers already handle (None: not ours)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        kind = httpx.ConnectTimeout if connecting else httpx.ReadTimeout
        return kind(str(exc) or "timed out", request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(str(exc), request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.NetworkError(str(exc), request=request)
    return None


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = _httpx_error(exc, request, connecting=True)
        if error is None:
            raise
        raise error from exc


class _Body(httpx.AsyncByteStream):
    """The response body, chunk by chunk as it arrives.

    An iterator object rather than an async generator: a streaming Dify answer holds one of
    these for minutes, and a suspended generator (with its frame and an exception-mapping
    context manager) cost about a kilobyte more per stream."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except Exception as exc:
            error = _httpx_error(exc, self._request, connecting=False)
            if error is None:
                raise
            raise error from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        # A fully read response goes back to the pool; a half-read one is closed.
        self._response.release()


class _Response(httpx.Response):
    """httpx's client wraps each response's stream in a `BoundAsyncStream` that points back
    at the response: a reference cycle per request, which only a full garbage collection
    frees, and the gateway runs those rarely (`gateway/gc_tuning.py`). After a burst of
    5,000 answers that was ~50 MB of garbage (bench/README.md, "Memory after a burst").
    Once the response is closed its stream is spent: dropping it breaks the cycle, and
    reference counting frees the response as soon as its last user lets go."""

    async def aclose(self) -> None:
        await super().aclose()
        self.stream = _SPENT


_SPENT = httpx.ByteStream(b"")


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_s,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _as_httpx_errors(request):
            response = await self._get_session().request(
                request.method,
                str(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,  # httpx follows redirects itself, when asked to
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return _Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ApiClient(httpx.AsyncClient):
    """httpx without cookies. Platform APIs and Dify authenticate with headers, and httpx
    parses every response for cookies: about a third of the client-side CPU of a streaming
    update in our benchmark."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None
