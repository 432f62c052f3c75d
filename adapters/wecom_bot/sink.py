"""The reply sink of the WeCom AI bot: one stream per answer, plus one overflow path.

A WeCom stream holds at most 20,480 bytes and must finish within 6 minutes of the user's
message (doc path/100719, path/101031). So an answer has two places to go:

1. **The stream.** `update` shows the growing text; `finish` closes it. When the core rolls
   over (`finish(text, last=False)`), or when the stream window is about to end, the stream
   is closed with what it shows plus a note that the answer continues.
2. **The overflow**: the rest, as Markdown. In webhook mode that is the callback's
   `response_url`, which takes **one** message within 1 h (path/101138): every further
   part is collected and sent at the end in that one message, cut (with a note saying so)
   only if it exceeds one message. In WebSocket mode it is `aibot_send_msg`, one message
   per part. When there is no overflow path (a response_url that is not WeCom's), the
   stream ends with the note that the answer was cut, and the rest is dropped.

The app's images (JPG or PNG) go into the final stream reply as `msg_item`s. Other files
cannot go through a stream: in WebSocket mode they are uploaded and sent as file messages
after the answer; in webhook mode, which has no upload, the core names them in the text.

Buttons (`ShowsControls`): a stream carries none, so the app's suggested questions
(`amend`) and a paused form's actions (`offer`, sent after the final text) go out as a
template card of buttons of their own (cards.py), through the overflow path's channel
(the response_url, if the answer left it unused; `aibot_send_msg`). Stop and 👍/👎 are not
drawn: WeCom shows its own rating under the stream, and a stream has no place for a Stop.

Where the stream goes (the store for refresh callbacks, or WebSocket frames) is the
`StreamChannel`'s business; this class only decides what to show where.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from adapters.wecom_bot import cards, media
from adapters.wecom_bot.protocol import (
    IMAGE_TYPES,
    MAX_IMAGE_BYTES,
    MAX_ITEMS,
    image_item,
)
from gateway.controls import Controls, FormChoice
from gateway.platform import OutputFile, Pacing, PlatformError
from gateway.store.base import StoreUnavailable
from gateway.text import measure, split_text
from gateway.words import Words

log = logging.getLogger(__name__)

# Bytes kept free in the stream for a note under the text (`Words.continued`, `.taking_long`
# and `.cut`: a test checks that every locale's notes fit).
NOTE_MARGIN = 256
MAX_ITEM_BYTES = 10 * 1024 * 1024  # all images of one answer, before base64 (the store holds it)


class StreamChannel(Protocol):
    @property
    def pacing(self) -> Pacing: ...

    @property
    def overflow_once(self) -> bool:
        """True when the overflow path takes a single message (response_url)."""

    @property
    def takes_files(self) -> bool:
        """True when files can be uploaded and sent as messages (WebSocket mode)."""

    @property
    def can_overflow(self) -> bool:
        """False when there is no overflow path (a refused response_url): `overflow` then
        drops what it is given, with a log line."""

    async def upload_file(self, file: OutputFile) -> str:
        """Upload `file`; returns its media id."""

    async def send_file(self, media_id: str) -> None: ...

    async def show(
        self, content: str, *, finish: bool, items: Sequence[dict[str, Any]] = ()
    ) -> None: ...

    async def overflow(self, content: str) -> None: ...

    async def send_card(self, card: dict[str, Any]) -> None:
        """Send a template card of buttons after the answer."""


Release = Callable[[], Awaitable[None]]
KeepCard = Callable[[cards.Card], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class StreamSink:
    def __init__(
        self,
        channel: StreamChannel,
        *,
        limit: int,
        close_at: float,
        release: Release,
        spawn: Spawn,
        thinking: str | None,
        words: Words,
        resume: Mapping[str, Any] | None = None,
        keep_card: KeepCard | None = None,
        asker: str = "",
    ) -> None:
        self._channel = channel
        self._words = words
        self._keep_card = keep_card
        self._asker = asker  # who asked: only they may answer a form (the core checks)
        self._form: FormChoice | None = None  # a paused form's actions, after the text
        self._limit = limit  # bytes, for the stream and for one overflow message
        self._close_at = close_at
        self._release = release
        self._spawn = spawn
        self._thinking = thinking
        self._placeholder = words.thinking
        self._continued = "\n\n" + words.continued
        self._taking_long = "\n\n" + words.taking_long
        self._cut = "\n\n" + words.cut
        self._lock = asyncio.Lock()  # the deadline timer runs beside the core's calls
        self._timer: asyncio.Task[None] | None = None
        self._resumed = resume is not None
        state = dict(resume or {})
        self._index = int(state.get("index", 0))  # which of the core's messages is current
        self._closed = bool(state.get("closed", False))  # the stream got finish:true
        self._shown = str(state.get("shown", ""))  # what the stream showed when it closed
        self._pending = str(state.get("pending", ""))  # overflow collected for response_url
        self._released = bool(state.get("released", False))
        self._items: list[dict[str, Any]] = []  # images for the final reply
        self._media: list[str] = []  # files uploaded, to send after the answer

    @property
    def pacing(self) -> Pacing:
        return self._channel.pacing

    def snapshot(self) -> dict[str, Any]:
        return {
            "index": self._index,
            "closed": self._closed,
            "shown": self._shown,
            "pending": self._pending,
            "released": self._released,
        }

    async def begin(self) -> None:
        # A resumed answer keeps what its stream already shows.
        if not (self._closed or self._resumed or self._index) and self._thinking is not None:
            await self._channel.show(self._thinking, finish=False)
        if not self._closed:
            self._timer = self._spawn(self._close_when_due())

    async def update(self, text: str, status: str | None = None) -> None:
        async with self._lock:
            if self._index == 0 and not self._closed:
                await self._channel.show(self._with_status(text, status), finish=False)
                self._shown = text
            # Later messages go out whole, in finish(): the overflow path cannot edit.

    async def finish(self, text: str, *, last: bool) -> None:
        async with self._lock:
            if self._index == 0 and not self._closed:
                items = self._items if last else []
                note = self._continued if self._channel.can_overflow else self._cut
                content = text if last else text + note
                await self._channel.show(content, finish=True, items=items)
                self._closed, self._shown = True, text
                await self._let_go()
            else:
                await self._overflow(self._remainder(text), last=last)
            self._index += 1
            if last:
                await self._send_media()
                await self._let_go()
                self._stop_timer()
                await self._send_form()

    async def fail(self, text: str) -> None:
        await self.finish(text, last=True)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Images ride on the final stream reply; anything else (or an image once the
        stream has closed) is uploaded now where the channel can, else comes back to be
        named."""
        missing: list[OutputFile] = []
        total = 0
        for file in files:
            size = len(file.data)
            if (
                self._index == 0
                and not self._closed
                and file.mime_type in IMAGE_TYPES
                and 0 < size <= MAX_IMAGE_BYTES
                and total + size <= MAX_ITEM_BYTES
                and len(self._items) < MAX_ITEMS
            ):
                total += size
                self._items.append(image_item(file.data))
            elif self._channel.takes_files and media.fits(file):
                try:
                    self._media.append(await self._channel.upload_file(file))
                except PlatformError as exc:
                    log.warning("could not upload the file %s: %s", file.name, exc)
                    missing.append(file)
            else:
                missing.append(file)
        return missing

    def fold_reasoning(self, text: str) -> None:
        """WeCom cannot fold text: the reasoning stays hidden."""

    # --- buttons (ShowsControls) ---------------------------------------------------------

    def offer(self, controls: Controls) -> None:
        """Only a form's actions are drawn (after the final text); see the module's text."""
        self._form = controls.form

    async def show(self, controls: Controls) -> None:
        """A rating chosen: WeCom shows it under the stream itself."""

    async def amend(self, controls: Controls) -> None:
        if controls.suggestions:
            card = cards.suggestions_card(controls.answer_id, controls.suggestions, self._words)
            await self._send_card(card)

    async def still_running(self) -> None:
        """No Stop button: a stream has no place for one (`/stop` works)."""

    async def _send_form(self) -> None:
        """The form's actions as a card, once the text is out. Best effort: the text
        fallback (a reply with the number) answers the form all the same."""
        choice, self._form = self._form, None
        if choice is None:
            return
        try:
            await self._send_card(cards.form_card(choice, self._asker, self._words))
        except PlatformError as exc:
            log.warning("could not send a form's buttons: %s", exc)

    async def _send_card(self, card: cards.Card | None) -> None:
        """Keep the card (for the update a click makes) and send it."""
        if card is None:
            return
        if self._keep_card is not None:
            try:
                await self._keep_card(card)
            except StoreUnavailable as exc:  # a click still works, without the update
                log.warning("a card of buttons was not kept: %s", exc)
        await self._channel.send_card(card.template_card())

    # --- internals -----------------------------------------------------------------------

    def _with_status(self, text: str, status: str | None) -> str:
        """The status in place of the thinking text, or in italics under the answer."""
        if not text.strip():
            return status or self._placeholder
        return f"{text}\n\n*{status}*" if status else text

    def _remainder(self, text: str) -> str:
        """The part of the current message that the stream did not show (it was closed at
        the deadline while this message was still growing)."""
        if self._index != 0:
            return text
        return text[len(self._shown) :] if text.startswith(self._shown) else text

    async def _overflow(self, text: str, *, last: bool) -> None:
        if not self._channel.overflow_once:
            if text.strip():
                await self._channel.overflow(text)
            return
        if text.strip():
            joint = "" if not self._pending or self._pending.endswith("\n") else "\n"
            self._pending += joint + text
        if last and self._pending.strip():
            await self._channel.overflow(self._fit(self._pending))

    def _fit(self, text: str) -> str:
        if measure(text, "bytes") <= self._limit:
            return text
        log.warning("answer longer than the stream and one response_url message; cutting it")
        return split_text(text, self._limit - NOTE_MARGIN, "bytes")[0].render().rstrip() + self._cut

    async def _close_when_due(self) -> None:
        """Close the stream before WeCom stops refreshing it; the rest then goes to the
        overflow path when the answer ends."""
        await asyncio.sleep(max(0.0, self._close_at - time.time()))
        async with self._lock:
            if self._index != 0 or self._closed:
                return
            note = self._taking_long if self._channel.can_overflow else self._cut
            try:
                await self._channel.show((self._shown + note).lstrip(), finish=True)
            except Exception as exc:
                log.warning("could not close a stream at its deadline: %s", exc)
                return
            self._closed = True
            await self._let_go()

    async def _send_media(self) -> None:
        """Send the uploaded files after the answer. A failure is logged: the text is out,
        and a retried finish must not send a file twice."""
        uploaded, self._media = self._media, []
        for media_id in uploaded:
            try:
                await self._channel.send_file(media_id)
            except PlatformError as exc:
                log.warning("could not send a file of the answer: %s", exc)

    async def _let_go(self) -> None:
        if not self._released:
            self._released = True
            try:
                await self._release()
            except Exception as exc:  # the count also expires by itself
                log.warning("could not release the in-flight count: %s", exc)

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()


class QuietSink:
    """The sink of a click on WeCom's own 👍/👎: WeCom shows the rating itself, and the
    event can carry no reply, so whatever the core says back (an expired answer) is
    dropped, as before WeCom's AI bot had buttons of the gateway's."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing

    def snapshot(self) -> dict[str, Any]:
        return {}

    async def begin(self) -> None:
        pass

    async def update(self, text: str, status: str | None = None) -> None:
        pass

    async def finish(self, text: str, *, last: bool) -> None:
        log.debug("a reply to a WeCom feedback event is not shown")

    async def fail(self, text: str) -> None:
        pass

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        return list(files)

    def fold_reasoning(self, text: str) -> None:
        pass

    def offer(self, controls: Controls) -> None:
        pass

    async def show(self, controls: Controls) -> None:
        pass

    async def amend(self, controls: Controls) -> None:
        pass

    async def still_running(self) -> None:
        pass
