"""Reloading the config (SIGHUP): what changed, and the bookkeeping that lets answers in
flight finish under the config they started with.

`plan()` compares two configs. Routes, apps and bots change without a restart: a bot that
is new starts, one that is gone stops, and one whose settings changed is built again
(`Gateway.apply` does it). The keys that shape the process itself (`server`, `store`,
`inbox`) are kept as they are until the next restart, and the log says so.

`reload_config()` is the whole SIGHUP: read and validate the file, and on an error keep the
running config and log every key that is wrong; count the outcome in
`dify_gateway_reloads_total`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from gateway.runtime import Gateway

log = logging.getLogger(__name__)

# Applied only at a restart: they size the process, its listener and its store.
RESTART_ONLY = ("server", "store", "inbox")


@dataclass(frozen=True, slots=True)
class Plan:
    added: list[str]
    removed: list[str]
    changed: list[str]
    kept: list[str]
    # Sections whose new values wait for a restart.
    restart_only: list[str]

    def summary(self) -> str:
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("restarted", self.changed),
            )
            if names
        ]
        return "; ".join(parts) or "no bot changed"


def plan(old: Config, new: Config) -> Plan:
    """What applying `new` over `old` does to each bot. Secrets compare by value, so a
    rotated token restarts its bot."""
    return Plan(
        added=[name for name in new.bots if name not in old.bots],
        removed=[name for name in old.bots if name not in new.bots],
        changed=[n for n, bot in new.bots.items() if n in old.bots and old.bots[n] != bot],
        kept=[n for n, bot in new.bots.items() if n in old.bots and old.bots[n] == bot],
        restart_only=[key for key in RESTART_ONLY if getattr(old, key) != getattr(new, key)],
    )


def effective(old: Config, new: Config) -> Config:
    """`new`, with the restart-only sections as they are running now."""
    return new.model_copy(update={key: getattr(old, key) for key in RESTART_ONLY})


class InUse:
    """How many answers are using each adapter object now, so an adapter that a reload
    replaced or removed is closed only after its last answer finished."""

    def __init__(self) -> None:
        self._count: Counter[int] = Counter()
        self._idle: dict[int, asyncio.Event] = {}

    @contextmanager
    def using(self, thing: object) -> Iterator[None]:
        key = id(thing)
        self._count[key] += 1
        try:
            yield
        finally:
            self._count[key] -= 1
            if self._count[key] <= 0:
                del self._count[key]
                idle = self._idle.pop(key, None)
                if idle is not None:
                    idle.set()

    def count(self, thing: object) -> int:
        return self._count.get(id(thing), 0)

    async def idle(self, thing: object) -> None:
        """Return once no answer uses `thing`."""
        key = id(thing)
        if not self._count.get(key):
            return
        await self._idle.setdefault(key, asyncio.Event()).wait()


async def reload_config(
    gateway: Gateway, path: str | Path, *, on_applied: Callable[[Config], None] | None = None
) -> bool:
    """Read `path` and apply it. False (and the running config kept) when it is invalid.
    `on_applied` gets the new config after it took effect (the process re-reads its log
    settings and secrets there)."""
    if gateway.draining:
        log.warning("SIGHUP while shutting down: the config is not reloaded")
        return False
    log.info("reloading the config from %s", path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        gateway.metrics.reloads.labels("error").inc()
        for problem in exc.problems:
            log.error("config not reloaded, the running config stays: %s", problem)
        return False
    try:
        applied = await gateway.apply(config)
    except Exception:
        gateway.metrics.reloads.labels("error").inc()
        log.exception("config not reloaded: applying it failed; the running config stays")
        return False
    if on_applied is not None:
        on_applied(applied)
    gateway.metrics.reloads.labels("ok").inc()
    return True
