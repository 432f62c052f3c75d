"""The HTTP edge: aiohttp request -> WebhookRequest -> adapter -> inbox -> ack.

The only module (with app.py) that knows aiohttp's server side. Bad input never produces a
500: verification failures are 401, unparseable bodies 400, an unavailable store 503 (so the
platform retries, maybe on another instance).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.base import WebhookRejected
from gateway.models import Answered, HttpResponse, Ignored, Messages, WebhookRequest
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)


def _reply(response: HttpResponse) -> web.Response:
    return web.Response(
        status=response.status,
        body=response.body,
        content_type=response.content_type,
        headers=dict(response.headers) or None,
    )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


async def webhook(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    name = request.match_info["bot"]
    adapter = gateway.adapters.get(name)
    metrics = gateway.metrics
    if adapter is None or not adapter.serves_webhook:
        return _error(404, "unknown bot")
    if gateway.draining:
        return _error(503, "shutting down")
    body = await _read_body(request, gateway.config.server.max_body_bytes)
    if body is None:
        metrics.webhooks.labels(name, "too_large").inc()
        return _error(413, "body too large")
    req = WebhookRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        received_at=time.time(),
    )
    try:
        outcome = await adapter.handle(req)
    except WebhookRejected as exc:
        log.info("bot %s: rejected webhook (%d): %s", name, exc.status, exc)
        metrics.webhooks.labels(name, f"rejected_{exc.status}").inc()
        return _error(exc.status, "rejected")
    except Exception:
        # An adapter bug on odd input must not become a 500: log it, refuse the input.
        log.exception("bot %s: could not handle webhook", name)
        metrics.webhooks.labels(name, "error").inc()
        return _error(400, "bad request")
    if isinstance(outcome, Messages):
        try:
            await gateway.intake.accept(outcome.messages)
        except StoreUnavailable as exc:
            log.error("bot %s: store unavailable, asking the platform to retry: %s", name, exc)
            metrics.webhooks.labels(name, "unavailable").inc()
            return _error(503, "temporarily unavailable")
        metrics.webhooks.labels(name, "accepted").inc()
        return _reply(outcome.ack)
    if isinstance(outcome, Answered):
        metrics.webhooks.labels(name, "answered").inc()
        return _reply(outcome.response)
    assert isinstance(outcome, Ignored)
    metrics.webhooks.labels(name, "ignored").inc()
    return _reply(outcome.ack)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    problems = await gateway.readiness_problems()
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    return web.Response(
        body=gateway.metrics.render(),
        headers={
            "Content-Type": gateway.metrics.content_type,
        },
    )


@web.middleware
async def never_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one catch-all: whatever slipped through becomes a logged 503, never a traceback."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(503, "temporarily unavailable")


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", "/webhooks/{bot}", webhook)
    app.router.add_route("GET", "/webhooks/{bot}", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
