"""The two reply sinks: finished markdown messages, or an AI card streamed in place.

AI card lifecycle (open-dingtalk/dingtalk-stream-sdk-python `card_replier.py`,
`card_instance.py`; open.dingtalk.com "AI 卡片"): `POST /v1.0/card/instances/createAndDeliver`
puts a card into `dtv1.card//IM_ROBOT.<staffId>` (a one-to-one chat) or
`dtv1.card//IM_GROUP.<conversationId>`; `PUT /v1.0/card/instances` sets variables (all
strings), among them `flowStatus` 1 PROCESSING, 2 INPUTING, 3 FINISHED, 5 FAILED; `PUT
/v1.0/card/streaming` replaces one variable (`isFull: true`, a new `guid` per call). A card
left in 1 or 2 spins forever in the user's chat, so the closing call is retried here and by
the core. A card with the gateway's buttons (card_buttons.py) is this card with more
variables, set in the same calls (`_variables`), and a record kept before it is created
(`_placing`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.media import MediaSender
from adapters.dingtalk.reply import Destination, MarkdownSender
from gateway.platform import OutputFile, Pacing, PlatformError, RateLimited
from gateway.words import Words

log = logging.getLogger(__name__)

CONTENT_KEY = "msgContent"  # the built-in AI markdown card's text variable
PROCESSING, INPUTING, FINISHED, FAILED = "1", "2", "3", "5"
CLOSE_TRIES = 3

# 20 robot messages a minute is DingTalk's documented custom-robot limit; a safe pace here.
MARKDOWN_PACING = Pacing(min_interval=3.0, budget="robot.send", budget_per_second=20 / 60)
# The OpenAPI allows 20 calls/s per app and API: keep half for card creation and closing.
CARD_PACING = Pacing(min_interval=0.5, budget="card.streaming", budget_per_second=10.0)


class MarkdownSink:
    """Replies as finished markdown messages; nothing shows until a part is complete."""

    def __init__(
        self,
        sender: MarkdownSender,
        media: MediaSender,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self._sender = sender
        self._media = media
        self._parts = int(resume.get("parts", 0)) if resume else 0

    @property
    def pacing(self) -> Pacing:
        return MARKDOWN_PACING

    async def begin(self) -> None:
        """Markdown messages can't be edited, so there is no thinking message to replace."""

    async def update(self, text: str, status: str | None = None) -> None:
        """Nothing to show: a markdown message is only sent once its part is finished."""

    async def finish(self, text: str, *, last: bool) -> None:
        await self._sender.send(text, mention=self._parts == 0)
        self._parts += 1
        if last:
            await self._media.send()

    async def fail(self, text: str) -> None:
        await self.finish(text, last=True)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        return await self._media.upload(files)

    def fold_reasoning(self, text: str) -> None:
        """DingTalk markdown cannot fold text: the reasoning stays hidden."""

    def snapshot(self) -> dict[str, Any]:
        return {"parts": self._parts}


class CardSink:
    """Streams the answer into AI cards: one card per part, each closed FINISHED or FAILED."""

    def __init__(
        self,
        api: DingtalkApi,
        destination: Destination,
        template_id: str,
        resume: Mapping[str, Any] | None = None,
        *,
        words: Words,
    ) -> None:
        self._api = api
        self._media = MediaSender(api, destination, images_in_card=True)
        self._thinking = f"_{words.thinking}_"
        self._to = destination
        self._template = template_id
        self._cards: list[str] = list(resume.get("cards", [])) if resume else []
        # A resumed answer takes its open card over instead of posting a second one.
        open_card = resume.get("open") if resume else None
        self._open: str | None = open_card if isinstance(open_card, str) else None
        self._inputing = self._open is not None

    @property
    def pacing(self) -> Pacing:
        return CARD_PACING

    async def begin(self) -> None:
        if self._open is None:
            await self._create(self._thinking, PROCESSING, writing=True)

    async def update(self, text: str, status: str | None = None) -> None:
        text = self._with_status(text, status)
        if self._open is None:
            await self._create(text, INPUTING, writing=True)
            self._inputing = True
            return
        if not self._inputing:
            # The SDK's AI card switches to INPUTING once, before the first streamed text.
            await self._api.update_card(self._open, {"flowStatus": INPUTING})
            self._inputing = True
        await self._api.stream_card(self._open, uuid.uuid4().hex, CONTENT_KEY, text)

    async def finish(self, text: str, *, last: bool) -> None:
        images = self._media.card_images if last else ""
        await self._close(f"{text.rstrip()}\n\n{images}" if images else text, FINISHED, last)
        if last:
            self._media.card_images_shown()
            await self._media.send()

    async def fail(self, text: str) -> None:
        await self._close(text, FAILED, final=False)

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        """Images go into the final card (as markdown images); other files come as robot
        messages after it."""
        return await self._media.upload(files)

    def fold_reasoning(self, text: str) -> None:
        """The AI card cannot fold text: the reasoning stays hidden."""

    def snapshot(self) -> dict[str, Any]:
        return {"cards": list(self._cards), "open": self._open}

    def _with_status(self, text: str, status: str | None) -> str:
        """The text with the status in italics under it; the status (else "Thinking…")
        in its place while there is no text."""
        if not text.strip():
            return f"_{status}_" if status else self._thinking
        return f"{text}\n\n_{status}_" if status else text

    @property
    def cards(self) -> list[str]:
        return list(self._cards)

    # --- what a card with buttons adds (card_buttons.py) ---------------------------------

    def _variables(self, *, writing: bool, final: bool) -> dict[str, str]:
        """Card variables besides the text and status: for a card being written (`writing`),
        or for one that ends, the answer's last and not failed (`final`)."""
        return {}

    async def _placing(self, track: str) -> None:
        """Called before the card `track` is created."""

    # --- helpers -------------------------------------------------------------------------

    async def _create(
        self, text: str, status: str, *, writing: bool = False, final: bool = False
    ) -> str:
        track = f"dgw{uuid.uuid4().hex}"
        params = {CONTENT_KEY: text, "flowStatus": status}
        params |= self._variables(writing=writing, final=final)
        await self._placing(track)
        body: dict[str, Any] = {
            "cardTemplateId": self._template,
            "outTrackId": track,
            "cardData": {"cardParamMap": params},
            # Clicks on a template's buttons come back on the bot's Stream connection
            # (frames.CARD_TOPIC); the built-in AI card has none, so none come.
            "callbackType": "STREAM",
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
            "userIdType": 1,
        }
        if self._to.group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{self._to.conversation_id}"
            deliver: dict[str, Any] = {"robotCode": self._api.robot_code}
            if self._to.staff_id:
                deliver["atUserIds"] = {self._to.staff_id: self._to.nick}
            body["imGroupOpenDeliverModel"] = deliver
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{self._to.staff_id}"
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT"}
        await self._api.create_and_deliver_card(body)
        self._cards.append(track)
        self._open = track
        self._inputing = status == INPUTING
        return track

    async def _close(self, text: str, status: str, final: bool) -> None:
        """Give the open card its final text and status (or post a finished card); `final`:
        it ends the answer well."""
        if self._open is None:
            await self._create(text, status, final=final)
        else:
            params = {CONTENT_KEY: text, "flowStatus": status}
            params |= self._variables(writing=False, final=final)
            for attempt in range(1, CLOSE_TRIES + 1):
                try:
                    await self._api.update_card(self._open, params)
                    break
                except RateLimited:
                    raise  # the core waits as long as DingTalk asks, then calls again
                except PlatformError as exc:
                    if attempt == CLOSE_TRIES:
                        raise
                    log.warning("closing AI card failed (try %d): %s", attempt, exc)
                    await asyncio.sleep(0.2 * attempt)
        self._open = None
        self._inputing = False
