"""Serve a `Gateway` over aiohttp, and stop it gracefully.

SIGTERM/SIGINT: `/readyz` and every webhook answer 503 at once (so the load balancer and the
platforms go elsewhere), answers in flight finish within `shutdown_grace_s`, then the server
closes and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.config import Config
from gateway.http import GATEWAY, add_routes, never_500
from gateway.runtime import Gateway

log = logging.getLogger(__name__)


def create_app(gateway: Gateway) -> web.Application:
    # aiohttp enforces the body limit on chunked bodies too (413); the edge also checks
    # Content-Length before reading.
    app = web.Application(
        client_max_size=gateway.config.server.max_body_bytes, middlewares=[never_500]
    )
    app[GATEWAY] = gateway

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.aclose()

    app.cleanup_ctx.append(lifetime)
    add_routes(app)
    return app


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    gateway = Gateway(config)
    app = create_app(gateway)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port, backlog=1024)
    await site.start()
    log.info(
        "dify-gateway listening on %s:%d with %d bots (store: %s)",
        config.server.host,
        config.server.port,
        len(config.bots),
        config.store.split("://")[0],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: no new webhooks; finishing answers in flight")
    await gateway.drain()
    await runner.cleanup()
    log.info("stopped")
