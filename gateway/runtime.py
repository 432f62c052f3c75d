"""The gateway's parts, wired from a `Config`, and their lifetime.

Nothing here knows HTTP: `gateway/app.py` serves this over aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import httpx

from gateway.activity import Activity
from gateway.bot_state import BotStates, reporting_for
from gateway.config import Config
from gateway.dify import DifyClient
from gateway.inbox import Inbox, Progress, Undeliverable
from gateway.intake import Intake
from gateway.limits import Limits
from gateway.logs import Masker, config_secrets, describe
from gateway.metrics import Metrics
from gateway.models import InboundMessage, Job
from gateway.pacing import BotBudget
from gateway.platform import Adapter, AdapterContext, AssistantHooks, DrainsClients
from gateway.registry import create_adapter
from gateway.relay import Relay
from gateway.reload import InUse, effective, plan
from gateway.router import Router
from gateway.store.base import Store, StoreUnavailable
from gateway.store.factory import open_store
from gateway.transport import AiohttpTransport, ApiClient
from gateway.words import Words, words_for

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


class _CurrentRelay:
    """The `AssistantHooks` adapters get: always the relay running now, so an adapter a
    reload kept sees the new routes and apps."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def opening_statement(self, message: InboundMessage) -> str | None:
        return await self._gateway.relay.opening_statement(message)


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
        # What the status page shows of recent messages: kept across reloads.
        self.activity = Activity(keep_text=config.server.status_show_text)
        self.inbox = Inbox(
            self.store,
            self.store.feed(lease_s=config.inbox.lease_s),
            self._answer,
            self._give_up,
            max_concurrent=config.server.max_concurrent_answers,
            max_queued=config.server.max_queued_answers,
            max_attempts=config.inbox.max_attempts,
            metrics=self.metrics,
        )
        self.draining = False
        self.budgets: dict[str, BotBudget] = {}
        self.words: dict[str, Words] = {}
        self.adapters: dict[str, Adapter] = {}
        self.router = Router(config)
        # Long connections read this on every delivery: while draining, nothing is claimed
        # and nothing acked, so the platform delivers it again (maybe to another instance).
        self.intake = Intake(
            self.router, self.inbox, self.metrics, self.adapters, draining=lambda: self.draining
        )
        self._wire(config, {})
        self._in_use = InUse()
        self._on_reload: list[Callable[[], None]] = []
        self._reloading = asyncio.Lock()
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    # --- wiring (at start, and again on each reload) ------------------------------------

    def _wire(self, config: Config, keep: Mapping[str, Adapter]) -> None:
        """Build what `config` describes, reusing the adapters in `keep`, and make it the
        running setup. Everything is built before anything is swapped, so a failure leaves
        the running setup as it was. Answers already running hold the relay (and through
        it the adapters, apps and words) they started with."""
        budgets = {name: self.budgets.get(name) or BotBudget() for name in config.bots}
        words = {name: words_for(bot.resolved_locale) for name, bot in config.bots.items()}
        adapters: dict[str, Adapter] = {}
        for name, bot in config.bots.items():
            if name in keep:
                adapters[name] = keep[name]
                continue
            context = AdapterContext(
                http=self.http,
                store=self.store,
                budget=budgets[name],
                deliver=self.intake.deliver_for(name),
                assistant=self._assistant,
                words=words[name],
                max_body_bytes=config.server.max_body_bytes,
            )
            adapters[name] = create_adapter(name, bot, context)
        router = Router(config)
        relay = Relay(
            adapters=adapters,
            budgets=budgets,
            words=words,
            apps=config.dify.apps,
            dify=self.dify,
            store=self.store,
            router=router,
            metrics=self.metrics,
            limits=Limits(
                bots=config.bots,
                router=router,
                store=self.store,
                metrics=self.metrics,
                words=words,
            ),
            activity=self.activity,
        )
        self.config, self.router, self.budgets, self.adapters = config, router, budgets, adapters
        self.words = words
        self.relay: Relay = relay
        self.intake.rewire(router, adapters)
        self.bot_states.mask = Masker(config_secrets(config))
        for name, adapter in adapters.items():
            if name not in keep:
                bot = config.bots[name]
                self.bot_states.add(name, bot.platform, bot.mode_name, _ready_of(adapter))

    @property
    def _assistant(self) -> AssistantHooks:
        return _CurrentRelay(self)

    def on_reload(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each reload took effect (the HTTP edge rebuilds its
        route table there)."""
        self._on_reload.append(listener)

    async def apply(self, config: Config) -> Config:
        """Run `config` from now on (a reload): bots added start, bots removed stop once
        their answers in flight finished, bots whose settings changed are built again.
        Returns the config now running (restart-only sections as they were)."""
        async with self._reloading:
            if self.draining:
                raise RuntimeError("shutting down")
            new = effective(self.config, config)
            change = plan(self.config, config)
            old_adapters = self.adapters
            keep = {name: old_adapters[name] for name in change.kept}
            self._wire(new, keep)
            for name in change.removed + change.changed:
                self._retire(name, old_adapters[name], keep_state=name in change.changed)
            for name in change.added + change.changed:
                self._start_in_background(name, self.adapters[name])
            for listener in self._on_reload:
                listener()
            for key in change.restart_only:
                log.warning("config reloaded: %s changed; it takes effect at the next restart", key)
            log.info("config reloaded: %s", change.summary())
            return new

    def _retire(self, name: str, adapter: Adapter, *, keep_state: bool) -> None:
        """Stop an adapter a reload replaced or removed: it takes nothing new at once (its
        webhook is gone from the edge), and it closes once its last answer finished."""
        starting = self._starting.pop(name, None)
        if starting is not None:
            starting.cancel()
        if not keep_state:
            self.bot_states.remove(name)

        async def close_when_idle() -> None:
            try:
                await self._in_use.idle(adapter)
            finally:  # also when the gateway shuts down first: its connection must end
                try:
                    await adapter.aclose()
                except Exception as exc:
                    log.warning("bot %s did not close cleanly: %s", name, exc)
                log.info("bot %s: the replaced or removed adapter is closed", name)

        task = asyncio.create_task(close_when_idle(), name=f"retire {name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # --- answering, through whatever setup is running when the answer starts ------------

    async def _answer(self, job: Job, progress: Progress) -> None:
        relay = self.relay
        bot = job.message.bot
        adapter = relay.adapter(bot)
        if adapter is None:
            raise Undeliverable(f"bot {bot} no longer exists (removed by a reload)")
        if not relay.has_app(job.app):
            raise Undeliverable(f"app {job.app} no longer exists (removed by a reload)")
        with self._in_use.using(adapter):
            await relay.answer(job, progress)

    async def _give_up(self, job: Job, progress: Progress) -> None:
        relay = self.relay
        adapter = relay.adapter(job.message.bot)
        if adapter is None:
            return  # nobody to tell: the bot is gone
        with self._in_use.using(adapter):
            await relay.give_up(job, progress)

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
        self._starting[name] = task
        task.add_done_callback(lambda done: self._forget_start(name, done))

    def _forget_start(self, name: str, task: asyncio.Task[None]) -> None:
        if self._starting.get(name) is task:
            del self._starting[name]

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
                # The state change was logged once (gateway/bot_state.py); each retry is not.
                log.debug("bot %s: start failed; retrying in %.0fs", name, delay)
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
        tasks = [*self._starting.values(), *([self._watcher] if self._watcher else [])]
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._finish_answers()
        # Let go of the inbox's shards now, so another instance resumes what is left at once.
        await self.inbox.close()
        # Adapters a reload replaced: their answers are done (or the grace is over) by now.
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name, adapter in self.adapters.items():
            self.bot_states.stop(name)
            try:
                await adapter.aclose()
            except Exception as exc:
                log.warning("bot %s did not close cleanly: %s", name, exc)
        await self.http.aclose()
        await self.dify_http.aclose()
        await self.store.aclose()
