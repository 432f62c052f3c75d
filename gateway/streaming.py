"""Turn a growing answer into reply-sink calls, the same way for every platform.

- `begin()` shows the thinking state at once (the sink decides what that looks like).
- Text arrives through `append`/`replace`. A single pacer task pushes the current text to
  the sink no faster than `BotBudget.interval(sink.pacing)`: the per-message minimum, or the
  message's fair share of the bot's budget, whichever is slower. At most one sink call per
  message is in flight, so updates never overtake each other.
- Before a message would exceed the platform limit, it is finished and a new one started.
- Sinks that cannot edit get finished paragraphs instead of updates, paced the same way.
- `finish()`/`fail()` always deliver the exact final text, retrying through rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.base import Capabilities, Pacing, PlatformError, RateLimited, ReplySink
from gateway.pacing import BotBudget
from gateway.text import measure, paragraph_break, split_text

log = logging.getLogger(__name__)

EMPTY_ANSWER = "_(The assistant returned an empty answer.)_"
MIN_PARAGRAPH_PART = 300  # chars; shorter paragraphs wait to be sent with the next ones
FINAL_TRIES = 6
MAX_RATE_LIMIT_WAIT = 30.0

Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]


class AnswerStream:
    def __init__(
        self,
        sink: ReplySink,
        capabilities: Capabilities,
        budget: BotBudget,
        *,
        checkpoint: Checkpoint | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._caps = capabilities
        self._budget = budget
        self._checkpoint = checkpoint
        self._clock = clock
        self._full = ""
        self._offset = 0  # where the current platform message starts in _full
        self._reopen = ""  # a code fence reopened at the top of the current message
        self._shown = ""  # what the current message shows now
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._pacer: asyncio.Task[None] | None = None
        self._joined: Pacing | None = None
        self._next_at = 0.0
        self._last_snapshot: dict[str, Any] | None = None
        self.updates = 0
        self.parts = 0

    # --- input ---------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self._full

    def append(self, delta: str) -> None:
        if delta:
            self._full += delta
            self._wake.set()

    def replace(self, text: str) -> None:
        self._full = text
        self._offset = min(self._offset, len(text))
        self._wake.set()

    # --- lifecycle -----------------------------------------------------------------------

    async def begin(self) -> None:
        await self._best_effort(self._sink.begin)
        await self._save_checkpoint()
        self._rejoin()
        self._next_at = self._clock() + self._budget.interval(self._sink.pacing)
        self._pacer = asyncio.create_task(self._pace())

    async def finish(self) -> None:
        await self._stop_pacer()
        current = self._current()
        if not self._full.strip():
            current = EMPTY_ANSWER
        elif not current.strip():
            # Every part already went out (only possible after a moderation rewrite
            # shortened the text): there is nothing left to send.
            log.info("answer fully delivered before the end; no final part")
            return
        await self._deliver_all(current, failed=False)

    async def fail(self, notice: str) -> None:
        await self._stop_pacer()
        current = self._current()
        text = f"{current.rstrip()}\n\n{notice}" if current.strip() else notice
        await self._deliver_all(text, failed=True)

    # --- the pacer -----------------------------------------------------------------------

    async def _pace(self) -> None:
        while not self._closing.is_set():
            await self._wake.wait()
            delay = max(self._next_at - self._clock(), self._budget.paused_for())
            if delay > 0 and await self._closed_within(delay):
                return
            if self._closing.is_set():
                return
            self._wake.clear()
            await self._step()
            self._rejoin()
            self._next_at = self._clock() + self._budget.interval(self._sink.pacing)

    async def _closed_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    async def _step(self) -> None:
        await self._roll_over()
        current = self._current()
        if self._caps.can_edit:
            if (
                current.strip()
                and current != self._shown
                and await self._best_effort(self._sink.update, current)
            ):
                self._shown = current
                self.updates += 1
            return
        # Search the text without its trailing blank lines: the last paragraph stays back
        # until more text follows it, so the final part `finish()` sends is never empty.
        cut = paragraph_break(current.rstrip(), len(self._reopen), MIN_PARAGRAPH_PART)
        if cut is None:
            return
        if await self._best_effort(self._sink.finish, current[:cut], last=False):
            self._advance(cut, "")
            await self._save_checkpoint()

    async def _roll_over(self) -> None:
        """Finish messages while the current one is over the limit."""
        limit, unit = self._caps.max_message, self._caps.unit
        while measure(current := self._current(), unit) > limit:
            parts = split_text(current, limit, unit)
            if not await self._best_effort(self._sink.finish, parts[0].render(), last=False):
                return  # try again on the next step; finish() delivers regardless
            self._advance(len(parts[0].body), parts[1].prefix)
            await self._save_checkpoint()

    def _advance(self, consumed: int, reopen: str) -> None:
        """The first `consumed` characters of the current message went out in a part."""
        self._offset += max(1, consumed - len(self._reopen))
        self._reopen = reopen
        self._shown = ""
        self.parts += 1

    def _current(self) -> str:
        return self._reopen + self._full[self._offset :]

    def _rejoin(self) -> None:
        pacing = self._sink.pacing
        if pacing != self._joined:
            if self._joined is not None:
                self._budget.leave(self._joined)
            self._budget.join(pacing)
            self._joined = pacing

    async def _stop_pacer(self) -> None:
        self._closing.set()
        self._wake.set()  # the pacer may be parked waiting for text
        if self._pacer is not None:
            await self._pacer
        if self._joined is not None:
            self._budget.leave(self._joined)
            self._joined = None

    # --- sink calls ----------------------------------------------------------------------

    async def _best_effort(
        self, call: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any
    ) -> bool:
        """An intermediate call: on failure, log, slow down if asked, and move on."""
        try:
            await call(*args, **kwargs)
            return True
        except RateLimited as exc:
            self._budget.slow_down(exc.retry_after)
            self._wake.set()
        except PlatformError as exc:
            log.warning("reply update failed: %s", exc)
            self._wake.set()
        except Exception:
            log.exception("reply update failed unexpectedly")
        return False

    async def _deliver_all(self, text: str, *, failed: bool) -> None:
        parts = split_text(text, self._caps.max_message, self._caps.unit)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and failed:
                await self._deliver(self._sink.fail, part.render())
            else:
                await self._deliver(self._sink.finish, part.render(), last=last)
            self.parts += 1
            if not last:
                await self._save_checkpoint()

    async def _deliver(
        self, call: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any
    ) -> None:
        """A final call: retry through rate limits and transient errors."""
        for attempt in range(1, FINAL_TRIES + 1):
            wait = self._budget.paused_for()
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_RATE_LIMIT_WAIT))
            try:
                await call(*args, **kwargs)
                return
            except RateLimited as exc:
                self._budget.slow_down(exc.retry_after)
                if attempt == FINAL_TRIES:
                    raise
            except PlatformError as exc:
                if attempt >= 3:
                    raise
                log.warning("final reply failed (try %d): %s", attempt, exc)
                await asyncio.sleep(0.5 * attempt)

    async def _save_checkpoint(self) -> None:
        if self._checkpoint is None:
            return
        snapshot = self._sink.snapshot()
        if snapshot != self._last_snapshot:
            self._last_snapshot = snapshot
            try:
                await self._checkpoint(snapshot)
            except Exception as exc:  # a checkpoint is an aid to recovery, never a blocker
                log.warning("could not save reply checkpoint: %s", exc)
