"""Serve a `Gateway` over aiohttp, and stop it gracefully.

SIGTERM/SIGINT: `/readyz` and every webhook answer 503 at once (so the load balancer and the
platforms go elsewhere), answers in flight finish within `shutdown_grace_s`, then the server
closes and the process exits 0. SIGHUP reloads the config (gateway/reload.py).

Connections are bounded in time (`read_timeout_s`, `keepalive_timeout_s`:
`gateway.connections`) and in number (`max_connections`, kept under the open-file limit:
`gateway.listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway import gc_tuning
from gateway.config import Config, ServerConfig
from gateway.connections import GuardedServer
from gateway.http import Edge
from gateway.listener import Listener, connection_cap
from gateway.reload import reload_config
from gateway.runtime import Gateway

log = logging.getLogger(__name__)
_AIOHTTP_BODY_LIMIT = inspect.signature(web.BaseRequest).parameters["client_max_size"].default
BACKLOG = 1024  # connections the kernel holds for us while we are at max_connections
# Files besides sockets: the store's files, logs, the event loop's own, imports.
OTHER_FILES = 64


def outbound_files(server: ServerConfig) -> int:
    """Files the gateway may need besides inbound connections: each answer holds a Dify
    stream and a platform connection and sometimes a file transfer; the store its pool."""
    return 3 * server.max_concurrent_answers + server.store_max_connections + OTHER_FILES


def file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if soft == resource.RLIM_INFINITY else soft


def create_server(gateway: Gateway) -> GuardedServer:
    """aiohttp's low-level server around the edge (call it with the event loop running).

    Every request is made with the configured body limit, which aiohttp then enforces on
    chunked bodies too (413); the edge also checks Content-Length before reading. With the
    default limit (1 MiB, as aiohttp's), aiohttp's own request factory already does that."""
    server = gateway.config.server
    cap = connection_cap(server.max_connections, outbound_files(server), file_limit())
    if cap < server.max_connections:
        log.warning(
            "the open-file limit (%d) leaves room for %d inbound connections, not "
            "server.max_connections (%d): raise the hard limit (ulimit -Hn)",
            file_limit(),
            cap,
            server.max_connections,
        )
    limit = server.max_body_bytes

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

    return GuardedServer(
        Edge(gateway),
        read_timeout=server.read_timeout_s,
        max_connections=cap,
        keepalive_timeout=server.keepalive_timeout_s,
        request_factory=None if limit == _AIOHTTP_BODY_LIMIT else make_request,
        access_log=None,
    )


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
) -> AsyncIterator[Listener]:
    """The gateway running and listening on host:port, until the block ends (with port 0,
    on a free port: the listener's `port`)."""
    async with running(gateway, manage_gc=manage_gc), listening(gateway, host, port) as listener:
        yield listener


@contextlib.asynccontextmanager
async def listening(gateway: Gateway, host: str, port: int) -> AsyncIterator[Listener]:
    """The edge listening on host:port, without the gateway's lifetime (that is `running`)."""
    server = create_server(gateway)
    runner = web.ServerRunner(server)
    await runner.setup()
    listener = Listener(server, host, port, backlog=BACKLOG)
    try:
        await listener.start()
        yield listener
    finally:
        await listener.close()
        await runner.cleanup()


def raise_file_limit(wanted: int) -> None:
    """Each streaming answer holds a socket to Dify and the platform; a soft limit of 1,024
    open files (a common default) would cap the gateway far below max_concurrent_answers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("raised the open-file limit from %d to %d", soft, target)


async def serve(
    config: Config,
    *,
    ready: asyncio.Event | None = None,
    config_path: str | Path | None = None,
    on_config: Callable[[Config], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully. With `config_path`, SIGHUP
    reloads the config from it (`on_config` gets each config that took effect)."""
    raise_file_limit(config.server.max_connections + outbound_files(config.server))
    gateway = Gateway(config)
    async with serving(gateway, config.server.host, config.server.port, manage_gc=True):
        with _reload_on_sighup(gateway, config_path, on_config):
            await _until_stopped(config, gateway, ready)
    log.info("stopped")


@contextlib.contextmanager
def _reload_on_sighup(
    gateway: Gateway, path: str | Path | None, on_config: Callable[[Config], None] | None
) -> Iterator[None]:
    """SIGHUP reloads the config from `path` (one reload at a time: `Gateway.apply` holds a
    lock). Without a path, SIGHUP is only logged: it must never end the process."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_sighup() -> None:
        if path is None:
            log.warning("SIGHUP: no config file to reload from; ignored")
            return
        task = loop.create_task(reload_config(gateway, path, on_applied=on_config))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in reloads:
            task.cancel()


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
