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

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http_routes import AdapterRoute
from gateway.models import Answered, HttpResponse, Ignored, Messages, WebhookRequest
from gateway.platform import Adapter, ServesRoutes, WebhookRejected
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

Endpoint = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
READ_METHODS = frozenset({"GET", "HEAD"})
WEBHOOK_METHODS = frozenset({"GET", "POST"})  # GET: URL checks (WeCom, Feishu)
WEBHOOK_PREFIX = "/webhooks/"


def _reply(response: HttpResponse) -> web.Response:
    if not response.body and not response.headers:
        return web.Response(status=response.status)
    headers = {"Content-Type": response.content_type, **response.headers}
    return web.Response(status=response.status, body=response.body, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (declared or actually sent)."""
    length = request.content_length
    if length is not None and length > limit:
        return None  # refused before reading a byte of it
    payload = request.content
    if payload.is_eof():
        # The usual webhook: the whole body came in with the headers. Take it from the
        # buffer; `request.read()` would copy it through a bytearray in a read loop.
        body = payload.read_nowait()
        return None if len(body) > limit else body
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        # curl and some proxies wait for this before sending a body over 1 KB or 1 MB.
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        # The request was made with client_max_size=limit (app.create_server), which also
        # bounds chunked bodies that declare no length.
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


class BotWebhook:
    """`/webhooks/<bot>`: one bot's adapter behind the shared ack path."""

    __slots__ = ("_adapter", "_count", "_gateway", "_intake", "_max_body", "_name")

    def __init__(self, name: str, adapter: Adapter, gateway: Gateway) -> None:
        self._name = name
        self._adapter = adapter
        self._gateway = gateway
        self._intake = gateway.intake
        self._count = gateway.metrics.count_webhook
        self._max_body = gateway.config.server.max_body_bytes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        name, count = self._name, self._count
        if self._gateway.draining:
            return _error(503, "shutting down")
        body = await _read_body(request, self._max_body)
        if body is None:
            count(name, "too_large")
            return _error(413, "body too large")
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
            log.info("bot %s: rejected webhook (%d): %s", name, exc.status, exc)
            count(name, f"rejected_{exc.status}")
            return _error(exc.status, "rejected")
        except StoreUnavailable as exc:
            # Some adapters read the store to answer (WeCom AI-bot refreshes): retry later.
            log.error("bot %s: store unavailable while handling a webhook: %s", name, exc)
            count(name, "unavailable")
            return _error(503, "temporarily unavailable")
        except Exception:
            # An adapter bug on odd input must not become a 500: log it, refuse the input.
            log.exception("bot %s: could not handle webhook", name)
            count(name, "error")
            return _error(400, "bad request")
        if isinstance(outcome, Messages):
            try:
                await self._intake.accept(outcome.messages)
            except StoreUnavailable as exc:
                log.error("bot %s: store unavailable, asking the platform to retry: %s", name, exc)
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
        self._routes: dict[str, tuple[frozenset[str], Endpoint]] = {
            "/healthz": (READ_METHODS, self._healthz),
            "/readyz": (READ_METHODS, self._readyz),
            "/metrics": (READ_METHODS, self._metrics),
        }
        for name, adapter in gateway.adapters.items():
            # Bots on a long connection (Slack Socket Mode, DingTalk Stream, ...) take no
            # webhooks: their path is as unknown as a bot that does not exist.
            if adapter.serves_webhook:
                self._routes[WEBHOOK_PREFIX + name] = (
                    WEBHOOK_METHODS,
                    BotWebhook(name, adapter, gateway),
                )
            if isinstance(adapter, ServesRoutes):  # the web chat's page and socket
                for path, handler in adapter.routes().items():
                    self._routes[path] = (READ_METHODS, AdapterRoute(name, handler, gateway))

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        # The one catch-all: whatever slipped through becomes a logged 503, never a 500.
        try:
            route = self._routes.get(request.path)
            if route is None:
                unknown_bot = request.path.startswith(WEBHOOK_PREFIX)
                return _error(404, "unknown bot" if unknown_bot else "not found")
            methods, endpoint = route
            if request.method not in methods:
                return _error(405, "method not allowed", {"Allow": ", ".join(sorted(methods))})
            return await endpoint(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _error(503, "temporarily unavailable")

    async def _healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.BaseRequest) -> web.StreamResponse:
        problems = await self._gateway.readiness_problems()
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.BaseRequest) -> web.StreamResponse:
        metrics = self._gateway.metrics
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})
