"""Feishu reply sink: a CardKit streaming card, or a PATCHed interactive card.

CardKit (https://open.feishu.cn/document/feishu-cards/streaming-updates-openapi-overview):
1. `begin()` creates a card entity (JSON 2.0, `streaming_mode: true`) showing "Thinking…"
   and sends it as a reply to the user's message (in the topic thread if there is one);
2. `update(text)` PUTs the full text into the markdown element; the placeholder is not a
   prefix of the answer, so the first PUT replaces it, later ones type on;
3. `finish()` PUTs the final text and switches `streaming_mode` off (settings PATCH), which
   also sets the chat-list summary. If either fails, the card is replaced whole.

Every operation on a card carries a `sequence` that must grow strictly across all of that
card's operations (a repeat gets 300317). We use milliseconds since the card was created,
or the last value + 1 if larger: strictly increasing here, and still increasing when another
process resumes the card from a snapshot that is a few operations old.

The app's images are uploaded (`im/v1/images`) and shown in the final card under the text;
other files are uploaded (`im/v1/files`) and sent as file messages in the same thread.
Folded reasoning goes in a collapsed panel above the text (in the fallback card below
too: JSON 1.0 has the panel as well).

Buttons (`ShowsControls`, buttons.py): a Stop button in the card while the answer is
written (in the card as created: no call of its own); at the end the card is replaced whole
with the final text and 👍/👎 (one call, which also ends streaming); the suggested
questions follow with one more replacement (`amend`). A rating's click updates the 👍/👎
element of the CardKit card (a PATCHed fallback card keeps its buttons as they are: the
callback names no card content to rebuild it from); after a 👎 that element is a small
form asking why. A paused run's form shows its fields in a form in the card
(form_cards.py). The callback itself is answered `{}` at once (the card stays as it is);
every update is the worker's, through CardKit, after that answer.

Fallback, when CardKit fails on create or on the first PUT (no `cardkit:card:write` scope,
old tenant): a JSON 1.0 interactive card updated with `PATCH /im/v1/messages/:id`, about
once a second. A CardKit card that already shows "Thinking…" is recalled first, so the
placeholder never stays. Limits: CardKit 10 ops/s per card and 50/s per app; message PATCH
5 QPS per message; both 1000/min per app: hence the pacings below, which the core enforces.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from adapters.feishu import buttons, cards, form_cards
from adapters.feishu.api import FeishuAPI
from gateway.controls import Controls
from gateway.platform import OutputFile, Pacing, PlatformError, RateLimited
from gateway.words import Words

log = logging.getLogger(__name__)

CARDKIT_PACING = Pacing(min_interval=0.25, budget="cardkit", budget_per_second=15)
PATCH_PACING = Pacing(min_interval=1.0, budget="im.message.patch", budget_per_second=15)
RESUME_SEQUENCE_GAP = 1000  # sequence numbers skipped when a card is taken over
CLICK_SEQUENCE_GAP = 2000  # a click's update of a card, past the answer's own operations
CLICK_SEQUENCE_TRIES = 3
SEQUENCE_TAKEN = "300317"  # "sequence number compare failed": not above the card's last
NO_SCOPE = "99991672"  # "Access denied. One of the following scopes is required"
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_FILE_BYTES = 30 * 1024 * 1024
# What im/v1/images takes (TIFF and HEIC become JPG); anything else goes as a file.
IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/tiff",
        "image/heic",
    }
)
# im/v1/files `file_type` by extension; everything else is `stream`.
FILE_TYPES = {
    "opus": "opus",
    "mp4": "mp4",
    "pdf": "pdf",
    "doc": "doc",
    "docx": "doc",
    "xls": "xls",
    "xlsx": "xls",
    "ppt": "ppt",
    "pptx": "ppt",
}


@dataclass(slots=True)
class CardKitSupport:
    """Shared by one bot's sinks: whether the app may use CardKit at all."""

    enabled: bool = True


@dataclass(slots=True)
class _Card:
    """The platform message being written now."""

    message_id: str | None = None
    card_id: str | None = None  # a CardKit entity; None for a PATCHed interactive card
    created_at: float = 0.0  # wall clock: the base of the sequence numbers
    sequence: int = 0
    streamed: bool = False  # a content PUT has succeeded on this card
    shown: str | None = None  # what it shows; None when unknown (after a resume)
    has_stop: bool = False  # it shows a Stop button (the end takes it away)


class FeishuReplySink:
    def __init__(
        self,
        api: FeishuAPI,
        support: CardKitSupport,
        reply_to: Mapping[str, Any],
        answer_key: str,
        resume: Mapping[str, Any] | None = None,
        *,
        words: Words,
        where: buttons.Where | None = None,
    ) -> None:
        self._api = api
        self._where = where or buttons.Where(chat_type="p2p", thread="", in_thread=False)
        self._words = words
        self._stop_label = words.stop_button
        self._controls: Controls | None = None
        self._clicked = reply_to  # a click's sink: the card clicked
        # The final card as delivered, for `amend`: (card, text, images, panel).
        self._final: tuple[_Card, str, list[str], dict[str, Any] | None] | None = None
        self._thinking = words.thinking  # plain in the chat list, in italics in the card
        self._reasoning_title = words.reasoning_title
        self._images: list[str] = []  # image keys for the final card
        self._panel: dict[str, Any] | None = None  # folded reasoning for the final card
        self._support = support
        self._reply_to = str(reply_to["message_id"])
        self._in_thread = bool(reply_to.get("in_thread"))
        self._answer_key = answer_key
        self._cardkit = support.enabled
        self._card: _Card | None = None
        self._done: list[str] = []  # finished message ids
        self._sent = 0  # replies made, for their idempotency uuids
        if resume:
            self._cardkit = bool(resume.get("cardkit", self._cardkit))
            self._done = [str(m) for m in resume.get("done", [])]
            self._sent = int(resume.get("sent", len(self._done)))
            if isinstance(resume.get("card"), dict):
                card = _Card(**{**resume["card"], "shown": None})
                # The process that crashed may have sent operations after its snapshot, up
                # to the very millisecond of the takeover. Paced, it ran no more than a few
                # steps ahead of the clock: skip well past them.
                card.sequence = self._next_sequence(card) + RESUME_SEQUENCE_GAP
                self._card = card

    @property
    def pacing(self) -> Pacing:
        return CARDKIT_PACING if self._cardkit else PATCH_PACING

    def snapshot(self) -> dict[str, Any]:
        card = None
        if self._card is not None:
            card = {k: v for k, v in asdict(self._card).items() if k != "shown"}
        return {
            "cardkit": self._cardkit,
            "card": card,
            "done": list(self._done),
            "sent": self._sent,
        }

    # --- ReplySink -----------------------------------------------------------------------

    async def begin(self) -> None:
        if self._card is None:
            await self._open(f"_{self._thinking}_", self._thinking)

    async def update(self, text: str, status: str | None = None) -> None:
        text = cards.clean(text)
        preview = cards.summary(text) if text.strip() else status or self._thinking
        text = cards.with_status(text, cards.clean(status or "") or None, self._thinking)
        if self._card is None:
            await self._open(text, preview)
            return
        card = await self._sent_card()
        if text == card.shown:
            return
        if card.card_id is None:
            shown = cards.plain_card(text, None, None, self._stop(v2=False))
            await self._api.patch_message(self._message_id(card), shown)
            card.shown = text
            return
        try:
            await self._stream(card, text)
        except RateLimited:
            raise
        except PlatformError as exc:
            if card.streamed:
                raise
            log.warning("CardKit update failed (%s); falling back to a PATCHed card", exc.code)
            await self._fall_back(card, text)

    async def finish(self, text: str, *, last: bool) -> None:
        text = cards.clean(text)
        images = self._images if last else []
        panel = self._panel if last else None
        controls = self._controls if last else None
        if self._card is None:
            # Nothing shown yet for this part: one finished card, one call.
            # JSON 1.0 unless the card must fold reasoning or hold a form's fields.
            v2 = self._cardkit and bool(panel or form_cards.has_fields(controls))
            extra = form_cards.final(controls, self._where, v2=v2)
            card_json = (
                cards.final_card(text, images, panel, extra)
                if v2
                else cards.plain_card(text, images, panel, extra)
            )
            sent = _Card(message_id=await self._reply(card_json), shown=text)
            self._done.append(self._message_id(sent))
            self._final = (sent, text, images, panel) if last else None
            return
        card = await self._sent_card()
        if card.card_id is None:
            extra = form_cards.final(controls, self._where, v2=False)
            if text != card.shown or images or panel or extra or card.has_stop:
                await self._api.patch_message(
                    self._message_id(card), cards.plain_card(text, images, panel, extra)
                )
        else:
            where = self._card_where(card)
            await self._close(card, text, images, panel, form_cards.final(controls, where, v2=True))
        card.has_stop = False
        self._done.append(self._message_id(card))
        self._final = (card, text, images, panel) if last else None
        self._card = None

    async def fail(self, text: str) -> None:
        await self.finish(cards.failure_text(text), last=True)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Images are uploaded for the final card; other files are uploaded and sent as
        file messages now (the answer's card is already in the chat)."""
        missing: list[OutputFile] = []
        for file in files:
            size = len(file.data)
            try:
                if file.mime_type in IMAGE_TYPES and 0 < size <= MAX_IMAGE_BYTES:
                    key = await self._api.upload_image(file.name, file.data, file.mime_type)
                    self._images.append(key)
                elif 0 < size <= MAX_FILE_BYTES:
                    extension = file.name.rpartition(".")[2].lower()
                    kind = FILE_TYPES.get(extension, "stream")
                    key = await self._api.upload_file(file.name, file.data, file.mime_type, kind)
                    await self._reply_as("file", {"file_key": key})
                else:
                    missing.append(file)
            except PlatformError as exc:
                log.warning("Feishu could not send the file %s: %s", file.name, exc)
                missing.append(file)
        return missing

    def fold_reasoning(self, text: str) -> None:
        self._panel = cards.reasoning_panel(self._reasoning_title, text)

    # --- ShowsControls -------------------------------------------------------------------

    def offer(self, controls: Controls) -> None:
        self._controls = controls

    async def still_running(self) -> None:
        """The Stop button is in the card from the start."""

    async def amend(self, controls: Controls) -> None:
        """The final card again, with `controls` under it."""
        if self._final is None:
            return
        card, text, images, panel = self._final
        self._controls = controls
        if card.card_id is None:
            extra = form_cards.final(controls, self._where, v2=False)
            await self._api.patch_message(
                self._message_id(card), cards.plain_card(text, images, panel, extra)
            )
            return
        extra = form_cards.final(controls, self._card_where(card), v2=True)
        final = cards.final_card(text, images, panel, extra)
        await self._api.replace_card(card.card_id, final, self._next_sequence(card))

    async def show(self, controls: Controls) -> None:
        """A click's sink: the 👍/👎 of the CardKit card clicked, as they are now; after a
        👎, with a small form asking why in their place (form_cards.py), until the reason
        is sent (or the rating changes)."""
        card_id = str(self._clicked.get("card_id") or "")
        created_ms = self._clicked.get("created_ms")
        if not card_id or not isinstance(created_ms, int):
            log.info("a rating on a card that is not a CardKit card is not shown on it")
            return
        where = replace(self._where, card_id=card_id, created_ms=created_ms)
        if controls.ask_reason and self._clicked.get("reason_sent") is not True:
            element = form_cards.reason(controls, where, self._words)
        else:
            element = buttons.feedback(controls, where, v2=True)
        # Two clicks on one card in the same millisecond would carry the same sequence, and
        # Feishu refuses the second (300317): that one goes again one number higher.
        sequence = 0
        for attempt in range(CLICK_SEQUENCE_TRIES):
            sequence = max(sequence + 1, int(time.time() * 1000) - created_ms + CLICK_SEQUENCE_GAP)
            try:
                await self._api.update_element(card_id, buttons.FEEDBACK_ID, element, sequence)
                return
            except PlatformError as error:
                if error.code != SEQUENCE_TAKEN or attempt == CLICK_SEQUENCE_TRIES - 1:
                    raise

    # --- helpers -------------------------------------------------------------------------

    def _uuid(self, card_id: str | None) -> str:
        """Idempotency key of a reply (Feishu keeps it an hour): a retried reply never posts
        the same part twice. A CardKit entity is part of it, since each can be sent once."""
        key = f"{self._answer_key}:{self._sent}:{card_id or ''}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    async def _reply(self, content: object, card_id: str | None = None) -> str:
        return await self._reply_as("interactive", content, card_id)

    async def _reply_as(self, msg_type: str, content: object, card_id: str | None = None) -> str:
        uuid = self._uuid(card_id)
        message_id = await self._api.reply(
            self._reply_to, msg_type, content, in_thread=self._in_thread, uuid=uuid
        )
        self._sent += 1
        return message_id

    def _stop(self, *, v2: bool) -> list[dict[str, Any]]:
        """The Stop button for the card being written, or nothing."""
        if self._controls is None:
            return []
        return buttons.stop(self._stop_label, self._controls, self._where, v2=v2)

    def _card_where(self, card: _Card) -> buttons.Where:
        created_ms = int(card.created_at * 1000)
        return replace(self._where, card_id=card.card_id or "", created_ms=created_ms)

    async def _open(self, text: str, preview: str) -> None:
        """Start the current message showing `text`."""
        if self._cardkit:
            stop = self._stop(v2=True)
            try:
                card_id = await self._api.create_card(cards.streaming_card(text, preview, stop))
            except RateLimited:
                raise
            except PlatformError as exc:
                if exc.code == NO_SCOPE:
                    log.warning("CardKit is not allowed (add the cardkit:card:write scope)")
                    self._support.enabled = False
                log.warning("CardKit card creation failed (%s); using a PATCHed card", exc.code)
                self._cardkit = False
            else:
                created = time.time()
                self._card = _Card(card_id=card_id, created_at=created, shown=text)
                self._card.has_stop = bool(stop)
                await self._sent_card()
                return
        stop = self._stop(v2=False)
        message_id = await self._reply(cards.plain_card(text, None, None, stop))
        self._card = _Card(message_id=message_id, shown=text, has_stop=bool(stop))

    async def _sent_card(self) -> _Card:
        """The current card, sent: a card whose reply failed is sent now."""
        card = self._card
        assert card is not None
        if card.message_id is None:
            if card.card_id is not None:
                content = cards.card_reference(card.card_id)
            else:
                stop = self._stop(v2=False)
                card.has_stop = bool(stop)
                content = cards.plain_card(card.shown or f"_{self._thinking}_", None, None, stop)
            card.message_id = await self._reply(content, card.card_id)
        return card

    @staticmethod
    def _message_id(card: _Card) -> str:
        assert card.message_id is not None
        return card.message_id

    @staticmethod
    def _next_sequence(card: _Card) -> int:
        card.sequence = max(card.sequence + 1, int((time.time() - card.created_at) * 1000))
        return card.sequence

    async def _stream(self, card: _Card, text: str) -> None:
        assert card.card_id is not None
        await self._api.stream_text(card.card_id, cards.ELEMENT_ID, text, self._next_sequence(card))
        card.streamed, card.shown = True, text

    async def _close(
        self,
        card: _Card,
        text: str,
        images: list[str],
        panel: dict[str, Any] | None,
        extra: list[dict[str, Any]],
    ) -> None:
        """Final text (and the reasoning panel and images), then streaming off; if any of
        it is refused, replace the card whole (streaming also ends by itself after ~10
        minutes, and then the PUT is refused). A card with buttons to take away (Stop) or
        add (`extra`) is replaced whole at once: one call."""
        assert card.card_id is not None
        if card.has_stop or extra:
            final = cards.final_card(text, images, panel, extra)
            try:
                await self._api.replace_card(card.card_id, final, self._next_sequence(card))
                card.shown = text
                return
            except RateLimited:
                raise
            except PlatformError as exc:
                log.info("replacing the CardKit card failed (%s); closing it in steps", exc.code)
        try:
            if text != card.shown:
                await self._stream(card, text)
            if panel is not None:
                sequence = self._next_sequence(card)
                await self._api.add_elements(
                    card.card_id, [panel], sequence, before=cards.ELEMENT_ID
                )
            if images:
                sequence = self._next_sequence(card)
                await self._api.add_elements(card.card_id, cards.image_elements(images), sequence)
            settings = cards.closing_settings(text)
            await self._api.card_settings(card.card_id, settings, self._next_sequence(card))
        except RateLimited:
            raise
        except PlatformError as exc:
            if not card.streamed and text != card.shown:
                await self._fall_back(card, text)
                return
            log.info("closing CardKit card failed (%s); replacing it whole", exc.code)
            final = cards.final_card(text, images, panel, extra)
            await self._api.replace_card(card.card_id, final, self._next_sequence(card))
            card.shown = text

    async def _fall_back(self, card: _Card, text: str) -> None:
        """CardKit failed on a fresh card: recall it, continue in a PATCHed card."""
        self._cardkit = False
        placeholder = card.message_id
        card.card_id, card.message_id, card.shown = None, None, text
        if placeholder is not None:
            try:
                await self._api.delete_message(placeholder)
            except PlatformError as exc:
                log.warning("could not recall the CardKit placeholder (%s)", exc.code)
        await self._sent_card()
