"""Turn a growing answer into reply-sink calls, the same way for every platform.

- `begin()` shows the thinking state at once (the sink decides what that looks like).
- Text arrives through `append`/`replace`. The pacer pushes the current text to the sink no
  faster than `BotBudget.interval(sink.pacing)`: the per-message minimum, or the message's
  fair share of the bot's budget, whichever is slower. It is timer-driven (a task exists only
  while an update is in flight), and at most one sink call per message is in flight, so
  updates never overtake each other.
- Before a message would exceed the platform limit, it is finished and a new one started.
- Sinks that cannot edit get finished paragraphs instead of updates, paced the same way.
- `finish()`/`fail()` always deliver the exact final text, retrying through rate limits.
- Buttons (`offer`, `amend`): a sink that shows them (`ShowsControls`) hears once, after
  `STOP_AFTER_S`, that the answer is still being written (`still_running`): where a Stop
  button costs extra platform calls, only answers that take a while get one.
- A **status** (`set_status`: "Using web_search…") goes to the sink with the text, paced the
  same way; the final message never carries one. Files, folded reasoning and a footer
  (`attach_files`, `fold_reasoning`, `set_footer`) go with the final message only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.controls import Controls
from gateway.pacing import BotBudget
from gateway.platform import (
    Capabilities,
    ListsSources,
    OutputFile,
    Pacing,
    PlatformError,
    RateLimited,
    ReplySink,
    ShowsControls,
)
from gateway.text import measure, paragraph_break, split_text
from gateway.words import ENGLISH

log = logging.getLogger(__name__)

MIN_PARAGRAPH_PART = 300  # chars; shorter paragraphs wait to be sent with the next ones
FINAL_TRIES = 6
MAX_RATE_LIMIT_WAIT = 30.0
STOP_AFTER_S = 3.0  # an answer still being written after this long is offered a Stop

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
        empty_answer: str = ENGLISH.empty_answer,
        on_visible: Callable[[], None] | None = None,
    ) -> None:
        self._sink = sink
        # Called once, when the user first sees something of this answer.
        self._on_visible = on_visible
        self._caps = capabilities
        self._budget = budget
        self._checkpoint = checkpoint
        self._clock = clock
        self._empty_answer = empty_answer  # what the bot says when the app said nothing
        self._full = ""
        self._offset = 0  # where the current platform message starts in _full
        self._reopen = ""  # a code fence reopened at the top of the current message
        self._shown = ""  # what the current message shows now
        self._status: str | None = None  # what the app is doing, shown beside the text
        self._shown_status: str | None = None
        self._files: list[OutputFile] = []
        self._name_file: Callable[[OutputFile], str] = lambda file: file.name
        self._reasoning = ""
        self._sources: tuple[str, ...] = ()
        self._footer = ""
        # Pacing is timer-driven: between updates an answer holds one timer handle at most,
        # and a task only while an update is in flight (2,000 answers at once must stay
        # small: bench/README.md).
        self._dirty = False  # new text, or a failed update to retry
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        # The one `still_running` call: its timer, then its task while it runs.
        self._due: asyncio.TimerHandle | None = None
        self._due_call: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
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
            self._poke()

    def replace(self, text: str) -> None:
        self._full = text
        self._offset = min(self._offset, len(text))
        self._poke()

    @property
    def status(self) -> str | None:
        return self._status

    def set_status(self, status: str | None) -> None:
        """Say what the app is doing now (None: nothing in particular)."""
        if status != self._status:
            self._status = status
            self._poke()

    def attach_files(
        self, files: Sequence[OutputFile], name_file: Callable[[OutputFile], str]
    ) -> None:
        """Files to deliver with the final message; `name_file` gives the line that names a
        file the sink could not deliver."""
        self._files = list(files)
        self._name_file = name_file

    def fold_reasoning(self, text: str) -> None:
        """Reasoning to show folded in the final message (where the platform can fold)."""
        self._reasoning = text

    def offer(self, controls: Controls) -> None:
        """Buttons to show with the answer, where the sink draws them (`ShowsControls`)."""
        if isinstance(self._sink, ShowsControls):
            self._sink.offer(controls)

    async def amend(self, controls: Controls) -> None:
        """After `finish()`: show `controls` under the final message instead (best effort)."""
        if not isinstance(self._sink, ShowsControls):
            return
        try:
            await self._sink.amend(controls)
        except RateLimited as exc:
            self._budget.slow_down(exc.retry_after)
            log.info("the answer's buttons were not updated: %s", exc)
        except PlatformError as exc:
            log.info("the answer's buttons were not updated: %s", exc)

    def set_sources(self, sources: Sequence[str]) -> None:
        """The answer's sources, for a sink that lists them as data (`ListsSources`)."""
        self._sources = tuple(sources)

    def set_footer(self, text: str) -> None:
        """Markdown that ends the final message (sources, tools used, usage); not streamed."""
        self._footer = text

    # --- lifecycle -----------------------------------------------------------------------

    async def begin(self) -> None:
        # Where the platform can edit, begin() shows the thinking state; elsewhere it shows
        # nothing, and the first part of the answer is the first thing seen.
        if await self._best_effort(self._sink.begin) and self._caps.can_edit:
            self._visible()
        await self._save_checkpoint()
        self._rejoin()
        self._next_at = self._clock() + self._budget.interval(self._sink.pacing)
        self._started = True
        if self._dirty:
            self._schedule()
        if isinstance(self._sink, ShowsControls):
            self._due = asyncio.get_running_loop().call_later(STOP_AFTER_S, self._on_due)

    async def finish(self) -> None:
        await self._stop_pacer()
        current = self._current()
        if not self._full.strip():
            current = self._empty_answer
        elif not current.strip():
            # Every part already went out (only possible after a moderation rewrite
            # shortened the text): there is nothing left to send.
            log.info("answer fully delivered before the end; no final part")
            return
        missing = await self._send_files()
        if self._reasoning:
            self._sink.fold_reasoning(self._reasoning)
        if self._sources and isinstance(self._sink, ListsSources):
            self._sink.list_sources(self._sources)
        tail = "\n".join(self._name_file(file) for file in missing)
        for extra in (tail, self._footer):
            if extra.strip():
                current = f"{current.rstrip()}\n\n{extra.strip()}"
        await self._deliver_all(current, failed=False)

    async def _send_files(self) -> list[OutputFile]:
        """Hand the files to the sink; the ones it could not deliver come back."""
        if not self._files:
            return []
        try:
            return list(await self._sink.send_files(self._files))
        except Exception as exc:  # a file is an extra: the answer goes out regardless
            log.warning("could not deliver the app's files: %s", exc)
            return self._files

    def abandon(self) -> None:
        """This attempt goes no further (the inbox tries the job again): no more sink calls
        from its timers (a Stop posted for an answer nobody writes would stay)."""
        self._closing = True
        for handle in (self._timer, self._due):
            if handle is not None:
                handle.cancel()
        self._timer = self._due = None
        if self._joined is not None:
            self._budget.leave(self._joined)
            self._joined = None

    async def fail(self, notice: str) -> None:
        await self._stop_pacer()
        current = self._current()
        text = f"{current.rstrip()}\n\n{notice}" if current.strip() else notice
        await self._deliver_all(text, failed=True)

    # --- the pacer -----------------------------------------------------------------------

    def _poke(self) -> None:
        self._dirty = True
        self._schedule()

    def _schedule(self) -> None:
        """Run a step now, or set a timer for when pacing allows one. At most one step is
        in flight; one that finishes with more text waiting schedules the next."""
        if not self._started or self._closing or self._running or self._timer:
            return
        delay = max(self._next_at - self._clock(), self._budget.paused_for())
        loop = asyncio.get_running_loop()
        if delay > 0:
            self._timer = loop.call_later(delay, self._on_timer)
        else:
            self._running = loop.create_task(self._run_step())

    def _on_due(self) -> None:
        self._due = None
        if not self._closing:
            self._due_call = asyncio.get_running_loop().create_task(self._still_running())

    async def _still_running(self) -> None:
        """Tell the sink the answer takes a while; checkpoint what it posted for it (a
        takeover after a crash then finds it, and cleans it up)."""
        assert isinstance(self._sink, ShowsControls)
        try:
            await self._sink.still_running()
        except PlatformError as exc:
            log.info("no Stop button for a long answer: %s", exc)
            return
        await self._save_checkpoint()

    def _on_timer(self) -> None:
        self._timer = None
        self._schedule()  # pacing may have changed meanwhile (a 429 pauses the bot)

    async def _run_step(self) -> None:
        try:
            self._dirty = False
            await self._step()
            self._rejoin()
            self._next_at = self._clock() + self._budget.interval(self._sink.pacing)
        finally:
            self._running = None
            if self._dirty:
                self._schedule()

    async def _step(self) -> None:
        await self._roll_over()
        current = self._current()
        if self._caps.can_edit:
            text = current if current.strip() else ""
            status = self._status
            changed = (text, status) != (self._shown, self._shown_status)
            # Blank text shows the placeholder: send it only to show a status, or to take
            # one away again.
            wanted = bool(text) or status is not None or self._shown_status is not None
            if changed and wanted and await self._best_effort(self._sink.update, text, status):
                self._shown, self._shown_status = text, status
                self.updates += 1
                self._visible()
            return
        # Search the text without its trailing blank lines: the last paragraph stays back
        # until more text follows it, so the final part `finish()` sends is never empty.
        cut = paragraph_break(current.rstrip(), len(self._reopen), MIN_PARAGRAPH_PART)
        if cut is None:
            return
        if await self._best_effort(self._sink.finish, current[:cut], last=False):
            self._visible()
            self._advance(cut, "")
            await self._save_checkpoint()

    async def _roll_over(self) -> None:
        """Finish messages while the current one is over the limit."""
        limit, unit = self._caps.max_message, self._caps.unit
        while measure(current := self._current(), unit) > limit:
            parts = split_text(current, limit, unit)
            if not await self._best_effort(self._sink.finish, parts[0].render(), last=False):
                return  # try again on the next step; finish() delivers regardless
            self._visible()
            self._advance(len(parts[0].body), parts[1].prefix)
            await self._save_checkpoint()

    def _advance(self, consumed: int, reopen: str) -> None:
        """The first `consumed` characters of the current message went out in a part."""
        self._offset += max(1, consumed - len(self._reopen))
        self._reopen = reopen
        self._shown, self._shown_status = "", None
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
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None:
            await asyncio.shield(self._running)  # let a call in flight land, in order
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if self._due_call is not None:
            await asyncio.shield(self._due_call)  # what it posts, the end takes away
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
            self._poke()
        except PlatformError as exc:
            log.warning("reply update failed: %s", exc)
            self._poke()
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
                self._visible()
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

    def _visible(self) -> None:
        callback, self._on_visible = self._on_visible, None
        if callback is not None:
            callback()

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
