"""The HTTP edge: aiohttp request -> WebhookRequest -> adapter -> inbox -> ack.

The only module (with app.py) that knows aiohttp's server side. Bad input never produces a
500: verification failures are 401, unparseable bodies 400, an unavailable store 503 (so the
platform retries, maybe on another instance).

This is the ack path, the one place where microseconds count (bench/README.md): headers and
query pass through as aiohttp's own read-only mappings, metric children are looked up once,
and each handler carries its own catch-all instead of a middleware.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters.base import WebhookRejected
from gateway.models import Answered, HttpResponse, Ignored, Messages, WebhookRequest
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reply(response: HttpResponse) -> web.Response:
    if not response.body and not response.headers:
        return web.Response(status=response.status)
    headers = {"Content-Type": response.content_type, **response.headers}
    return web.Response(status=response.status, body=response.body, headers=headers)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def never_500(handler: Handler) -> Handler:
    """The one catch-all: whatever slipped through becomes a logged 503, never a traceback."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _error(503, "temporarily unavailable")

    return guarded


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


@never_500
async def webhook(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    name = request.match_info["bot"]
    adapter = gateway.adapters.get(name)
    count = gateway.metrics.count_webhook
    if adapter is None or not adapter.serves_webhook:
        return _error(404, "unknown bot")
    if gateway.draining:
        return _error(503, "shutting down")
    body = await _read_body(request, gateway.config.server.max_body_bytes)
    if body is None:
        count(name, "too_large")
        return _error(413, "body too large")
    req = WebhookRequest(
        method=request.method,
        path=request.path,
        query=request.query,  # already percent-decoded; read-only
        headers=request.headers,  # case-insensitive; adapters look up lower-case names
        body=body,
        received_at=time.time(),
    )
    try:
        outcome = await adapter.handle(req)
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
            await gateway.intake.accept(outcome.messages)
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


@never_500
async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


@never_500
async def readyz(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    problems = await gateway.readiness_problems()
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


@never_500
async def metrics(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    return web.Response(
        body=gateway.metrics.render(), headers={"Content-Type": gateway.metrics.content_type}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", "/webhooks/{bot}", webhook)
    app.router.add_route("GET", "/webhooks/{bot}", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
