"""The gateway's parts, wired from a `Config`, and their lifetime.

Nothing here knows HTTP: `gateway/app.py` serves this over aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from gateway.activity import Activity
from gateway.config import Config
from gateway.dify import DifyClient
from gateway.inbox import Inbox
from gateway.intake import Intake
from gateway.limits import Limits
from gateway.metrics import Metrics
from gateway.pacing import BotBudget
from gateway.platform import Adapter, AdapterContext, DrainsClients
from gateway.registry import create_adapter
from gateway.relay import Relay
from gateway.router import Router
from gateway.store.base import Store, StoreUnavailable
from gateway.store.factory import open_store
from gateway.transport import AiohttpTransport, ApiClient
from gateway.words import words_for

log = logging.getLogger(__name__)

USER_AGENT = "dify-gateway/0.1"


def platform_client() -> httpx.AsyncClient:
    """Platform APIs: short calls; the pool is shared by every bot."""
    return ApiClient(
        transport=AiohttpTransport(max_connections=256),
        timeout=httpx.Timeout(15.0, connect=5.0, pool=30.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def dify_client(max_concurrent: int) -> httpx.AsyncClient:
    """Dify: one long-lived connection per streaming answer, so the pool is sized for
    `max_concurrent_answers` plus room for uploads and small calls."""
    return ApiClient(
        transport=AiohttpTransport(max_connections=max_concurrent + 64),
        timeout=httpx.Timeout(60.0, connect=5.0, pool=30.0),
        headers={"User-Agent": USER_AGENT},
    )


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        http: httpx.AsyncClient | None = None,
        dify_http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = (
            store
            if store is not None
            else open_store(
                config.store,
                max_connections=config.server.store_max_connections,
                shards=config.inbox.shards,
            )
        )
        self.http = http if http is not None else platform_client()
        self.dify_http = (
            dify_http
            if dify_http is not None
            else dify_client(config.server.max_concurrent_answers)
        )
        self.dify = DifyClient(self.dify_http, on_malformed=self.metrics.sse_malformed.inc)
        self.router = Router(config)
        self.budgets = {name: BotBudget() for name in config.bots}
        self.adapters: dict[str, Adapter] = {}
        self.words = {name: words_for(bot.resolved_locale) for name, bot in config.bots.items()}
        self.activity = Activity(keep_text=config.server.status_show_text)
        self.relay = Relay(
            adapters=self.adapters,
            budgets=self.budgets,
            words=self.words,
            apps=config.dify.apps,
            dify=self.dify,
            store=self.store,
            router=self.router,
            metrics=self.metrics,
            limits=Limits(
                bots=config.bots,
                router=self.router,
                store=self.store,
                metrics=self.metrics,
                words=self.words,
            ),
            activity=self.activity,
        )
        self.inbox = Inbox(
            self.store,
            self.store.feed(lease_s=config.inbox.lease_s),
            self.relay.answer,
            self.relay.give_up,
            max_concurrent=config.server.max_concurrent_answers,
            max_queued=config.server.max_queued_answers,
            max_attempts=config.inbox.max_attempts,
            metrics=self.metrics,
        )
        self.draining = False
        # Long connections read this on every delivery: while draining, nothing is claimed
        # and nothing acked, so the platform delivers it again (maybe to another instance).
        self.intake = Intake(
            self.router, self.inbox, self.metrics, self.adapters, draining=lambda: self.draining
        )
        for name, bot in config.bots.items():
            context = AdapterContext(
                http=self.http,
                store=self.store,
                budget=self.budgets[name],
                deliver=self.intake.deliver_for(name),
                assistant=self.relay,
                words=self.words[name],
                max_body_bytes=config.server.max_body_bytes,
            )
            self.adapters[name] = create_adapter(name, bot, context)
        self._starting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the inbox's workers and every adapter, in the background: one bot that
        cannot reach its platform must not keep the others from serving. `/readyz` says
        who is not up yet."""
        await self.inbox.start()
        for name, adapter in self.adapters.items():
            task = asyncio.create_task(self._start_adapter(name, adapter), name=f"start {name}")
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_adapter(self, name: str, adapter: Adapter) -> None:
        delay = 1.0
        while True:
            try:
                await adapter.start()
                log.info("bot %s (%s) started", name, adapter.platform)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("bot %s failed to start: %s; retrying in %.0fs", name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def readiness_problems(self) -> list[str]:
        problems: list[str] = []
        if self.draining:
            problems.append("shutting down")
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
        except (StoreUnavailable, TimeoutError) as exc:
            problems.append(f"store: {exc or 'timeout'}")
        problems += [f"bot {n}: not ready" for n, a in self.adapters.items() if not a.ready]
        return problems

    def begin_shutdown(self) -> None:
        """Stop taking deliveries (webhooks get 503, long-connection deliveries stay unacked,
        so platforms deliver them again, elsewhere or later), let go of the clients that
        adapters hold (web chat sockets), and go unready."""
        self.draining = True
        for adapter in self.adapters.values():
            if isinstance(adapter, DrainsClients):
                adapter.begin_shutdown()

    async def drain(self) -> None:
        """Let answers in flight finish, bounded by `shutdown_grace_s`."""
        self.begin_shutdown()
        await self._finish_answers()

    async def _finish_answers(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.server.shutdown_grace_s
        # Claims already on their way to the store end in an ack: let their jobs reach the
        # inbox before it stops taking jobs, or they would be acked and never answered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.intake.settled(), deadline - loop.time())
        await self.inbox.drain(max(0.0, deadline - loop.time()))

    async def aclose(self) -> None:
        self.begin_shutdown()
        for task in list(self._starting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._finish_answers()
        # Let go of the inbox's shards now, so another instance resumes what is left at once.
        await self.inbox.close()
        for name, adapter in self.adapters.items():
            try:
                await adapter.aclose()
            except Exception as exc:
                log.warning("bot %s did not close cleanly: %s", name, exc)
        await self.http.aclose()
        await self.dify_http.aclose()
        await self.store.aclose()
