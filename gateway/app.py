"""Serve a `Gateway` over aiohttp, and stop it gracefully.

SIGTERM/SIGINT: `/readyz` and every webhook answer 503 at once (so the load balancer and the
platforms go elsewhere), answers in flight finish within `shutdown_grace_s`, then the server
closes and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import resource
import signal
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway import gc_tuning
from gateway.config import Config
from gateway.http import Edge
from gateway.runtime import Gateway

log = logging.getLogger(__name__)
_AIOHTTP_BODY_LIMIT = inspect.signature(web.BaseRequest).parameters["client_max_size"].default


def create_server(gateway: Gateway) -> web.Server:
    """aiohttp's low-level server around the edge (call it with the event loop running).

    Every request is made with the configured body limit, which aiohttp then enforces on
    chunked bodies too (413); the edge also checks Content-Length before reading. With the
    default limit (1 MiB, as aiohttp's), aiohttp's own request factory already does that."""
    limit = gateway.config.server.max_body_bytes
    if limit == _AIOHTTP_BODY_LIMIT:
        return web.Server(Edge(gateway), access_log=None)

    def make_request(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, task.get_loop(), client_max_size=limit
        )

    return web.Server(Edge(gateway), request_factory=make_request, access_log=None)


@contextlib.asynccontextmanager
async def running(gateway: Gateway, *, manage_gc: bool = False) -> AsyncIterator[None]:
    """The gateway's lifetime around serving. `manage_gc` (for the serving process, not for
    tests that build many gateways in one process) moves full garbage collections out of
    webhook bursts."""
    await gateway.start()
    collector: asyncio.Task[None] | None = None
    if manage_gc:
        gc_tuning.configure()
        collector = asyncio.create_task(
            gc_tuning.collect_when_quiet(lambda: gateway.inbox.last_accept)
        )
    try:
        yield
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        await gateway.aclose()


@contextlib.asynccontextmanager
async def serving(
    gateway: Gateway, host: str, port: int, *, manage_gc: bool = False
) -> AsyncIterator[None]:
    """The gateway running and listening on host:port, until the block ends."""
    async with running(gateway, manage_gc=manage_gc):
        runner = web.ServerRunner(create_server(gateway))
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, backlog=1024).start()
            yield
        finally:
            await runner.cleanup()


def raise_file_limit(wanted: int) -> None:
    """Each streaming answer holds a socket to Dify and the platform; a soft limit of 1,024
    open files (a common default) would cap the gateway far below max_concurrent_answers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("raised the open-file limit from %d to %d", soft, target)


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    raise_file_limit(3 * config.server.max_concurrent_answers + 1024)
    gateway = Gateway(config)
    async with serving(gateway, config.server.host, config.server.port, manage_gc=True):
        await _until_stopped(config, gateway, ready)
    log.info("stopped")


async def _until_stopped(config: Config, gateway: Gateway, ready: asyncio.Event | None) -> None:
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
