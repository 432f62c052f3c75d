"""The web chat's reply sink: every call becomes a frame in the user's mailbox.

A browser can show growing text as fast as it comes, so the sink edits (`can_edit`) at up to
ten updates a second per answer. Each update carries the whole text so far, so a socket that
missed some (or joined late) is right again with the next one, and the status line the page
shows under it while the app works ("Using web_search…").

The frames carry no files and nothing folds, so the app's files are named in the text (a
public link where there is one) and folded reasoning is left out.

Buttons (`ShowsControls`): the final frame carries the answer's `feedback`; a `controls`
frame for the answer brings its `suggestions` once the app gave them (after the final
frame, which does not wait for them), and a rating chosen. The page shows its
own Stop while an answer is written (any answer without a final frame can be stopped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.web import frames
from adapters.web.mailbox import Mailbox
from gateway.controls import Controls
from gateway.platform import OutputFile, Pacing, PlatformError
from gateway.store.base import StoreUnavailable

# No platform limit to respect, only the store (a write and a publish per update): ten a
# second per answer, and a bot-wide budget far above what a few hundred answers need.
PACING = Pacing(min_interval=0.1, budget="web", budget_per_second=500.0)
# One answer is one bubble: the engine splits nothing short of this.
MAX_ANSWER_CHARS = 1_000_000


class WebReplySink:
    pacing = PACING

    def __init__(
        self, mailbox: Mailbox, user: str, reply_to: str, resume: Mapping[str, Any] | None
    ) -> None:
        self._mailbox = mailbox
        self._user = user
        self._reply_to = reply_to
        # Parts finished before a rollover (only past MAX_ANSWER_CHARS): the bubble shows
        # them ahead of the current part.
        self._done = str(resume.get("done", "")) if resume else ""
        self._controls: Controls | None = None
        self._sources: tuple[str, ...] = ()

    async def begin(self) -> None:
        try:
            await self._mailbox.open(self._user, self._reply_to)
        except StoreUnavailable as exc:
            raise PlatformError("web", "store_unavailable", str(exc)) from exc
        # Empty text: the page shows its thinking state (and knows the message arrived).
        await self._post(frames.update(self._reply_to, self._done), last=False)

    async def update(self, text: str, status: str | None = None) -> None:
        frame = frames.update(self._reply_to, self._done + text, status or "")
        await self._post(frame, last=False)

    async def finish(self, text: str, *, last: bool) -> None:
        if not last:
            self._done += text + "\n"
            return
        offered = _offered(self._controls)
        frame = frames.final(self._reply_to, self._done + text, offered, self._sources)
        await self._post(frame, last=True)

    async def fail(self, text: str) -> None:
        await self._post(frames.error(self._reply_to, self._done + text), last=True)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        return list(files)

    def fold_reasoning(self, text: str) -> None:
        """The page cannot fold text: the reasoning stays out."""

    def list_sources(self, sources: Sequence[str]) -> None:
        self._sources = tuple(sources)

    def offer(self, controls: Controls) -> None:
        self._controls = controls

    async def show(self, controls: Controls) -> None:
        """The answer's controls as they are now, for the answer clicked (its id is the
        last part of the answer's job id: message ids hold no `:`)."""
        answer = controls.answer_id.rpartition(":")[2]
        frame = frames.controls_frame(answer, _offered(controls) or {})
        try:
            await self._mailbox.notify(self._user, frame)
        except StoreUnavailable as exc:
            raise PlatformError("web", "store_unavailable", str(exc)) from exc

    async def amend(self, controls: Controls) -> None:
        await self.show(controls)

    async def still_running(self) -> None:
        """The page shows its own Stop from the start."""

    def snapshot(self) -> dict[str, Any]:
        return {"done": self._done}

    async def _post(self, frame: frames.Frame, *, last: bool) -> None:
        try:
            await self._mailbox.post(self._user, frame, last=last)
        except StoreUnavailable as exc:
            # A PlatformError makes the engine retry the final frame, as any platform call.
            raise PlatformError("web", "store_unavailable", str(exc)) from exc


def _offered(controls: Controls | None) -> frames.Frame | None:
    if controls is None or not controls.final:
        return None
    return frames.controls(controls.feedback, controls.rating, controls.suggestions)
