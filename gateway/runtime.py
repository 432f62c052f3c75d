"""The gateway's parts, wired from a `Config`, and their lifetime.

Nothing here knows HTTP: `gateway/app.py` serves this over aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx

from gateway.activity import Activity
from gateway.bot_state import BotStates, reporting_for
from gateway.config import Config
from gateway.dify import DifyClient
from gateway.inbox import Inbox
from gateway.intake import Intake
from gateway.limits import Limits
from gateway.logs import Masker, config_secrets, describe
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
BOT_STATE_EVERY_S = 1.0


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


def _ready_of(adapter: Adapter) -> Callable[[], bool]:
    return lambda: adapter.ready


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
        # Each bot's state for the status page, `/metrics` and the log (gateway/bot_state.py).
        self.bot_states = BotStates(mask=Masker(config_secrets(config)))
        self.metrics.watch_bots(self.bot_states.snapshot)
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
        for name, adapter in self.adapters.items():
            bot = config.bots[name]
            self.bot_states.add(name, bot.platform, bot.mode_name, _ready_of(adapter))
        self._starting: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the inbox's workers and every adapter, in the background: one bot that
        cannot reach its platform must not keep the others from serving. `/readyz` says
        who is not up yet."""
        await self.inbox.start()
        for name, adapter in self.adapters.items():
            self._start_in_background(name, adapter)
        self._watcher = asyncio.create_task(self._watch_bots(), name="bot states")

    def _start_in_background(self, name: str, adapter: Adapter) -> None:
        # The bot's tasks (its long connection's) report their failures as its last error.
        with reporting_for(self.bot_states, name):
            task = asyncio.create_task(self._start_adapter(name, adapter), name=f"start {name}")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_adapter(self, name: str, adapter: Adapter) -> None:
        delay = 1.0
        while True:
            try:
                await adapter.start()
                self.bot_states.started(name)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.bot_states.failed(name, describe(exc))
                log.info("bot %s: start failed; retrying in %.0fs", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _watch_bots(self) -> None:
        """Notice a long connection going down or coming back within a second, so its log
        line and state change come when it happens, not at the next scrape."""
        while True:
            await asyncio.sleep(BOT_STATE_EVERY_S)
            self.bot_states.refresh()

    async def readiness_problems(self) -> list[str]:
        """Why this instance should get no traffic: shutting down, or the store does not
        answer. A bot that is down is not one (gateway/bot_state.py says why)."""
        problems: list[str] = []
        if self.draining:
            problems.append("shutting down")
        try:
            await asyncio.wait_for(self.store.ping(), 2.0)
        except (StoreUnavailable, TimeoutError) as exc:
            problems.append(f"store: {exc or 'timeout'}")
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
        tasks = [*self._starting, *([self._watcher] if self._watcher is not None else [])]
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._finish_answers()
        # Let go of the inbox's shards now, so another instance resumes what is left at once.
        await self.inbox.close()
        for name, adapter in self.adapters.items():
            self.bot_states.stop(name)
            try:
                await adapter.aclose()
            except Exception as exc:
                log.warning("bot %s did not close cleanly: %s", name, exc)
        await self.http.aclose()
        await self.dify_http.aclose()
        await self.store.aclose()
