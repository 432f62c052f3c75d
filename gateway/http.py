"""The HTTP edge: aiohttp request -> WebhookRequest -> adapter -> inbox -> ack.

The only module (with app.py) that knows aiohttp's server side. Bad input never produces a
500: verification failures are 401, unparseable bodies 400, an unavailable store 503 (so the
platform retries, maybe on another instance).

This is the ack path, the one place where microseconds count (bench/README.md). The surface
is three fixed paths plus one per bot, so the edge is a low-level aiohttp handler
(`web.Server`) with a route table of its own, an exact-path dict: aiohttp's application
layer (router, match info, middleware chain, the richer `web.Request`) cost about a fifth of
an ack. Each bot's webhook is an object bound to its adapter when the gateway starts, so a
request looks nothing up by name; headers and query pass through as aiohttp's own read-only
mappings; and each endpoint runs inside the one catch-all in `Edge.__call__`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import status_page
from gateway.connections import body_deadline
from gateway.http_routes import AdapterRoute
from gateway.logs import EdgeLog, describe, one_line
from gateway.models import Answered, HttpResponse, Ignored, Messages, WebhookRequest
from gateway.platform import Adapter, NotReady, ServesRoutes, WebhookRejected
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

Endpoint = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
READ_METHODS = frozenset({"GET", "HEAD"})
WEBHOOK_METHODS = frozenset({"GET", "POST"})  # GET: URL checks (WeCom, Feishu)
WEBHOOK_PREFIX = "/webhooks/"
# What aiohttp decodes before the edge sees the body (it refuses br/zstd itself when their
# library is missing). Any other coding would reach the adapter still encoded.
DECODED_ENCODINGS = frozenset({"identity", "gzip", "deflate", "br", "zstd"})


class Refused(Exception):
    """The request is refused before the adapter sees it: `status`, the caller's `error`
    word, and the log's `reason`. `close`: answer, then close the connection (the rest of
    the body is unread or unreadable)."""

    def __init__(self, status: int, error: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.close = close


def _reply(response: HttpResponse) -> web.Response:
    if not response.body and not response.headers:
        return web.Response(status=response.status)
    headers = {"Content-Type": response.content_type, **response.headers}
    return web.Response(status=response.status, body=response.body, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _answer_and_close(request: web.BaseRequest, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once: aiohttp would otherwise spend up
    to 10 s draining an unread body, or fail on one that does not decode."""
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        pass  # the client is gone already
    request.protocol.force_close()
    return response


async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The body; raises `Refused` when it is over `limit` bytes (declared or actually sent),
    encoded in a way aiohttp does not decode, broken, or not in by the read deadline."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and encoding.lower() not in DECODED_ENCODINGS:
        reason = f"unsupported Content-Encoding {one_line(encoding, 40)}"
        raise Refused(400, "bad request", reason, close=True)
    length = request.content_length
    if length is not None and length > limit:
        # Refused before reading a byte of it.
        raise Refused(413, "body too large", f"declared {length} bytes, over {limit}")
    payload = request.content
    if payload.is_eof() and payload.exception() is None:
        # The usual webhook: the whole body came in with the headers. Take it from the
        # buffer; `request.read()` would copy it through a bytearray in a read loop.
        body = payload.read_nowait()
        if len(body) > limit:
            raise Refused(413, "body too large", f"over {limit} bytes")
        return body
    try:
        async with asyncio.timeout_at(body_deadline(request)):
            if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == (
                "100-continue"
            ):
                # curl and some proxies wait for this before sending a body over 1 KB or 1 MB.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            # The request was made with client_max_size=limit (app.create_server), which
            # also bounds chunked bodies that declare no length.
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, "body too large", f"over {limit} bytes") from None
    except TimeoutError:
        raise Refused(
            408, "request timeout", "body not in within read_timeout_s", close=True
        ) from None
    except ConnectionError as exc:
        raise Refused(400, "bad request", f"client gone: {describe(exc)}", close=True) from None
    except Exception as exc:  # aiohttp's RequestPayloadError: bad chunking, gzip that is not
        raise Refused(400, "bad request", f"unreadable body: {describe(exc)}", close=True) from None


class BotWebhook:
    """`/webhooks/<bot>`: one bot's adapter behind the shared ack path."""

    __slots__ = ("_adapter", "_count", "_gateway", "_intake", "_log", "_max_body", "_name")

    def __init__(self, name: str, adapter: Adapter, gateway: Gateway, edge_log: EdgeLog) -> None:
        self._name = name
        self._adapter = adapter
        self._gateway = gateway
        self._intake = gateway.intake
        self._count = gateway.metrics.count_webhook
        self._max_body = gateway.config.server.max_body_bytes
        self._log = edge_log

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        name, count = self._name, self._count
        if self._gateway.draining:
            return _error(503, "shutting down")
        try:
            body = await _read_body(request, self._max_body)
        except Refused as refused:
            self._log.rejected(name, refused.status, str(refused))
            count(name, "too_large" if refused.status == 413 else f"rejected_{refused.status}")
            response = _error(refused.status, refused.error)
            return await _answer_and_close(request, response) if refused.close else response
        req = WebhookRequest(  # positional: the ack path builds one per request
            request.method,
            request.path,
            request.query,  # already percent-decoded; read-only
            request.headers,  # case-insensitive; adapters look up lower-case names
            body,
            time.time(),  # received_at
        )
        try:
            outcome = await self._adapter.handle(req)
        except WebhookRejected as exc:
            self._log.rejected(name, exc.status, str(exc))
            count(name, f"rejected_{exc.status}")
            return _error(exc.status, "rejected")
        except StoreUnavailable as exc:
            # Some adapters read the store to answer (WeCom AI-bot refreshes): retry later.
            self._log.unavailable(name, str(exc))
            count(name, "unavailable")
            return _error(503, "temporarily unavailable")
        except Exception as exc:
            # An adapter bug on odd input must not become a 500: log it, refuse the input.
            self._log.failed(f"bot {name}", 400, "could not handle webhook", exc)
            count(name, "error")
            return _error(400, "bad request")
        if isinstance(outcome, Messages):
            try:
                await self._intake.accept(outcome.messages)
            except NotReady as exc:  # the bot was removed by a reload a moment ago
                self._log.rejected(name, 503, str(exc))
                count(name, "rejected_503")
                return _error(503, "temporarily unavailable")
            except StoreUnavailable as exc:
                self._log.unavailable(name, str(exc))
                count(name, "unavailable")
                return _error(503, "temporarily unavailable")
            count(name, "accepted")
            return _reply(outcome.ack)
        if isinstance(outcome, Answered):
            count(name, "answered")
            return _reply(outcome.response)
        assert isinstance(outcome, Ignored)
        count(name, "ignored")
        return _reply(outcome.ack)


class Edge:
    """The whole HTTP surface, as one aiohttp low-level handler."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._log = EdgeLog(log)
        self._routes = self._route_table()
        # A reload brings bots, and so paths, in and out: the table follows it.
        gateway.on_reload(self._follow_reload)

    def _follow_reload(self) -> None:
        self._routes = self._route_table()  # one assignment: a request sees old or new

    def _route_table(self) -> dict[str, tuple[frozenset[str], Endpoint]]:
        gateway = self._gateway
        routes: dict[str, tuple[frozenset[str], Endpoint]] = {
            "/healthz": (READ_METHODS, self._healthz),
            "/readyz": (READ_METHODS, self._readyz),
            "/metrics": (READ_METHODS, self._metrics),
            "/status": (READ_METHODS, self._status),
        }
        for name, adapter in gateway.adapters.items():
            # Bots on a long connection (Slack Socket Mode, DingTalk Stream, ...) take no
            # webhooks: their path is as unknown as a bot that does not exist.
            if adapter.serves_webhook:
                routes[WEBHOOK_PREFIX + name] = (
                    WEBHOOK_METHODS,
                    BotWebhook(name, adapter, gateway, self._log),
                )
            if isinstance(adapter, ServesRoutes):  # the web chat's page and socket
                for path, handler in adapter.routes().items():
                    route = AdapterRoute(name, handler, gateway, self._log)
                    routes[path] = (READ_METHODS, route)
        return routes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        # The one catch-all: whatever slipped through becomes a logged 503, never a 500.
        try:
            route = self._routes.get(request.path)
            if route is None:
                unknown_bot = request.path.startswith(WEBHOOK_PREFIX)
                self._log.refused(404, f"{request.method} {request.path}")
                return _error(404, "unknown bot" if unknown_bot else "not found")
            methods, endpoint = route
            if request.method not in methods:
                self._refuse_method(request)
                return _error(405, "method not allowed", {"Allow": ", ".join(sorted(methods))})
            return await endpoint(request)
        except Exception as exc:
            self._log.failed("edge", 503, "unhandled error", exc)
            return _error(503, "temporarily unavailable")

    def _refuse_method(self, request: web.BaseRequest) -> None:
        bot = request.path.removeprefix(WEBHOOK_PREFIX)
        if bot != request.path:
            self._log.rejected(bot, 405, f"method {request.method}")
        else:
            self._log.refused(405, f"{request.method} {request.path}")

    async def _healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.BaseRequest) -> web.StreamResponse:
        # Each bot's state is for people and tests to read; it never decides the status.
        gateway = self._gateway
        problems = await gateway.readiness_problems()
        bots = {state.bot: state.state.value for state in gateway.bot_states.snapshot()}
        if problems:
            body = {"status": "not ready", "problems": problems, "bots": bots}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "bots": bots})

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        metrics = self._gateway.metrics
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    async def _status(self, request: web.BaseRequest) -> web.StreamResponse:
        """The status page (gateway/status_page.py): 404 unless a token is configured."""
        gateway = self._gateway
        token = gateway.config.server.status_token
        if token is None:
            self._log.refused(404, f"{request.method} {request.path}")
            return _error(404, "not found")
        if not status_page.authorized(token.get_secret_value(), request.headers, request.query):
            self._log.refused(401, f"{request.method} {request.path}: no or wrong token")
            return _error(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="status"'})
        page = status_page.render(
            bots=gateway.bot_states.snapshot(),
            routes=gateway.config.routes,
            activity=gateway.activity,
            show_text=gateway.config.server.status_show_text,
            instance=status_page.instance_name(),
        )
        return web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Content-Security-Policy": status_page.content_security_policy(),
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
            },
        )
