"""Each bot's state (starting, up, retrying, stopped), as the status page, the metrics and
the log see it.

A bot that cannot start (wrong credentials) or whose long connection is down keeps retrying
in the background and is reported here; it never makes the instance unready (`/readyz`
asks only whether the store answers and the instance is not shutting down), because one bad
bot must not take the others out of a load balancer.

`BotStates` is the one place that decides a bot's state. The gateway tells it when a bot's
start succeeds or fails (`started`, `failed`); whether a started bot is up right now is the
adapter's `ready` (its tokens and long connection), which `refresh()` reads: the gateway
calls it every second, and readers call it before they look, so they never see an old
state. Each change is logged once and counted in the `dify_gateway_bot_up` gauge.

Long connections report why they dropped through `connection_failed()`: `keep_connected`
calls it inside the task the adapter started, which carries the bot's context
(`reporting_for`), so adapters need not pass the bot's name around.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum

log = logging.getLogger(__name__)


class Phase(StrEnum):
    # Not started yet: the first attempt (token fetch, bot identity) is under way.
    STARTING = "starting"
    # Credentials work and any long connection is open: messages flow.
    UP = "up"
    # The last start failed, or the long connection is down: trying again with backoff.
    RETRYING = "retrying"
    # Removed by a reload or the gateway is shutting down: it takes nothing new.
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BotState:
    """One bot as it is now. `since` is the wall-clock time (epoch seconds) it entered
    `state`; `last_error` the latest failure (a start or a dropped connection), one line,
    with every configured secret masked, or None if it never failed."""

    bot: str
    platform: str
    mode: str
    state: Phase
    since: float
    last_error: str | None = None

    @property
    def up(self) -> bool:
        return self.state is Phase.UP


# Reads whether a started bot is up right now (the adapter's `ready`).
ReadyProbe = Callable[[], bool]
# Called on each change: the new state, after it was stored.
OnChange = Callable[[BotState], None]


class BotStates:
    """Every configured bot's state, in config order (`snapshot()`, `get()`)."""

    def __init__(
        self,
        *,
        mask: Callable[[str], str] = lambda text: text,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Masks the configured secrets in errors (replaced when a reload brings new ones).
        self.mask = mask
        self._on_change = on_change
        self._clock = clock
        self._states: dict[str, BotState] = {}
        self._probes: dict[str, ReadyProbe] = {}
        self._started: set[str] = set()
        # Bumped each time a bot is (re)added, so that the tasks of an adapter a reload
        # replaced cannot report into its successor's state (`reporting_for`).
        self._generation: dict[str, int] = {}

    # --- what readers use ----------------------------------------------------------------

    def snapshot(self) -> list[BotState]:
        """Every bot's state now (the status page and `/metrics` call this)."""
        self.refresh()
        return list(self._states.values())

    def get(self, bot: str) -> BotState | None:
        self.refresh()
        return self._states.get(bot)

    # --- what the gateway tells it -------------------------------------------------------

    def add(self, bot: str, platform: str, mode: str, ready: ReadyProbe) -> None:
        """A bot to watch, from now on (at start, or added by a reload): starting."""
        self._probes[bot] = ready
        self._started.discard(bot)
        self._generation[bot] = self._generation.get(bot, 0) + 1
        self._set(BotState(bot, platform, mode, Phase.STARTING, self._clock()))

    def generation(self, bot: str) -> int:
        """Which `add()` of `bot` is current."""
        return self._generation.get(bot, 0)

    def remove(self, bot: str) -> None:
        """The bot is gone (removed or replaced by a reload): forget it, after logging it
        stopped."""
        self.stop(bot)
        self._states.pop(bot, None)
        self._probes.pop(bot, None)
        self._started.discard(bot)

    def stop(self, bot: str) -> None:
        state = self._states.get(bot)
        self._started.discard(bot)
        if state is not None and state.state is not Phase.STOPPED:
            self._set(replace(state, state=Phase.STOPPED, since=self._clock()))

    def started(self, bot: str) -> None:
        """The bot's start succeeded: from now on its adapter's `ready` decides."""
        self._started.add(bot)
        self._refresh_one(bot)

    def failed(self, bot: str, error: str) -> None:
        """A start (or a connection) failed and will be tried again."""
        state = self._states.get(bot)
        if state is None or state.state is Phase.STOPPED:
            return
        error = self.mask(error)
        if state.state is Phase.RETRYING:
            # Still down: remember the newest reason without a new log line.
            self._states[bot] = replace(state, last_error=error)
        else:
            self._set(replace(state, state=Phase.RETRYING, since=self._clock(), last_error=error))

    def refresh(self) -> None:
        """Read every started bot's adapter: up, or retrying (its connection dropped)."""
        for bot in list(self._started):
            self._refresh_one(bot)

    def _refresh_one(self, bot: str) -> None:
        state, probe = self._states.get(bot), self._probes.get(bot)
        if state is None or probe is None or bot not in self._started:
            return
        try:
            up = probe()
        except Exception as exc:  # an adapter's `ready` must not break the readers
            self.failed(bot, f"could not read its state: {type(exc).__name__}: {exc}")
            return
        if up and state.state is not Phase.UP:
            self._set(replace(state, state=Phase.UP, since=self._clock()))
        elif not up and state.state is Phase.UP:
            self._set(replace(state, state=Phase.RETRYING, since=self._clock()))

    def _set(self, state: BotState) -> None:
        self._states[state.bot] = state
        _log_change(state)
        if self._on_change is not None:
            self._on_change(state)


def _log_change(state: BotState) -> None:
    # JSON logs get the bot and the new state as fields (gateway/logs.py).
    extra = {"bot": state.bot, "event": f"bot_{state.state}"}
    if state.state is Phase.RETRYING:
        reason = state.last_error or "its connection is down"
        log.warning("bot %s (%s) is retrying: %s", state.bot, state.platform, reason, extra=extra)
    elif state.state is Phase.UP:
        log.info("bot %s (%s, %s) is up", state.bot, state.platform, state.mode, extra=extra)
    else:
        log.info("bot %s (%s) is %s", state.bot, state.platform, state.state, extra=extra)


# --- connection failures, reported from inside the bot's tasks ------------------------------

_reporter: ContextVar[Callable[[str], None] | None] = ContextVar("bot_state_reporter", default=None)


@contextlib.contextmanager
def reporting_for(states: BotStates, bot: str) -> Iterator[None]:
    """Within this block, and in every task started in it (a long connection's), a
    `connection_failed()` is recorded as `bot`'s last error."""
    generation = states.generation(bot)

    def report(error: str) -> None:
        if states.generation(bot) == generation:  # not an adapter a reload replaced
            states.failed(bot, error)

    token = _reporter.set(report)
    try:
        yield
    finally:
        _reporter.reset(token)


def connection_failed(error: str) -> bool:
    """A long connection of the current bot dropped with `error` (see `reporting_for`).
    False when no bot's state took it (a connection outside any bot's context)."""
    report = _reporter.get()
    if report is None:
        return False
    report(error)
    return True
