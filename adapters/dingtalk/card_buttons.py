"""Buttons on the answer's AI card: Stop while it is written, 👍/👎 and the app's suggested
questions once it is done (`ShowsControls`).

DingTalk draws a card from a template made in its card builder; a message cannot carry
buttons of its own. So the gateway only sets card variables (`cardParamMap`, strings: a
boolean is "true" or "false", as DingTalk's card examples send it) that a template's
buttons bind to, and reads a click back by the button's action id (card_clicks.py). The
built-in AI card template has no such buttons, so the adapter uses this sink only for a
template of the operator's own (docs/dingtalk.md, "The AI card template").

- A card being written shows `showStop`; every other card hides it.
- The answer's last card, once it ends well, shows `showFeedback`, with `liked`/`disliked`
  the choice made so far, and `suggestion1..3` (`showSuggestion1..3`) when the app suggests
  follow-up questions (set with one more update, once the text is out).
- A click's sink updates the card clicked: the rating chosen (kept with the card's record,
  so that a click on the chosen one withdraws it).

Each card with buttons is recorded in the store before it is created (`CardPlace`), so a
click on it, which names only the card, finds its answer and its conversation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.card_clicks import CardPlace, CardPlaces
from adapters.dingtalk.reply import Destination
from adapters.dingtalk.sink import CardSink
from gateway.controls import MAX_SUGGESTIONS, Controls
from gateway.store.base import StoreUnavailable
from gateway.words import Words

log = logging.getLogger(__name__)

BUILTIN_AI_CARD = "382e4302-551d-4880-bf29-a30acfab2e71.schema"  # no buttons to bind
TRUE, FALSE = "true", "false"
NOTHING = Controls("")


def _flag(value: bool) -> str:
    return TRUE if value else FALSE


def variables(controls: Controls | None, *, writing: bool, stop_label: str) -> dict[str, str]:
    """Every button variable of a card: one being written (`writing`: its Stop), or one
    that ends with `controls` under it (None: nothing under it). All of them each time, so
    an update leaves no button of an earlier state behind."""
    # A form's actions are not drawn: the form shows as text, answered by a reply.
    shown = controls if controls is not None and controls.form is None else NOTHING
    under = not writing and shown.final
    suggestions = shown.suggestions[:MAX_SUGGESTIONS] if under else ()
    params = {
        "showStop": _flag(writing and shown.stop),
        "stopLabel": stop_label,
        "showFeedback": _flag(under and shown.feedback),
        "liked": _flag(under and shown.rating == "like"),
        "disliked": _flag(under and shown.rating == "dislike"),
    }
    for i in range(MAX_SUGGESTIONS):
        question = suggestions[i] if i < len(suggestions) else ""
        params[f"suggestion{i + 1}"] = question
        params[f"showSuggestion{i + 1}"] = _flag(bool(question))
    return params


class ButtonCardSink(CardSink):
    """An AI card sink whose cards carry the gateway's buttons."""

    def __init__(
        self,
        api: DingtalkApi,
        destination: Destination,
        template_id: str,
        resume: Mapping[str, Any] | None = None,
        *,
        words: Words,
        places: CardPlaces,
        clicked: str = "",
    ) -> None:
        super().__init__(api, destination, template_id, resume, words=words)
        self._stop_label = words.stop_button
        self._places = places
        self._controls: Controls | None = None
        self._clicked = clicked  # a click's sink: the card clicked

    # --- ShowsControls -------------------------------------------------------------------

    def offer(self, controls: Controls) -> None:
        self._controls = controls

    async def still_running(self) -> None:
        """The Stop button is in the card from the start."""

    async def amend(self, controls: Controls) -> None:
        """The last card again, with `controls` under it (the suggested questions)."""
        self._controls = controls
        if self.cards:
            params = variables(controls, writing=False, stop_label=self._stop_label)
            await self._api.update_card(self.cards[-1], params)

    async def show(self, controls: Controls) -> None:
        """A click's sink: the card clicked shows `controls` (the rating chosen), and its
        record keeps that rating (the next click on it withdraws it)."""
        if not self._clicked:
            return
        params = variables(controls, writing=False, stop_label=self._stop_label)
        await self._api.update_card(self._clicked, params)
        try:
            place = await self._places.get(self._clicked)
            if place is not None:
                await self._places.keep(self._clicked, replace(place, rating=controls.rating or ""))
        except StoreUnavailable as exc:
            log.info("card %s: the rating shown is not recorded: %s", self._clicked, exc)

    # --- CardSink hooks ------------------------------------------------------------------

    def _variables(self, *, writing: bool, final: bool) -> dict[str, str]:
        if self._controls is None:
            return {}
        shown = self._controls if writing or final else None
        return variables(shown, writing=writing, stop_label=self._stop_label)

    async def _placing(self, track: str) -> None:
        """Record where the card goes before it exists, so even a click at once finds it.
        Best effort: without the record, a click on the card says it expired."""
        if self._controls is None:
            return
        place = CardPlace(self._controls.answer_id, self._to.conversation_id, self._to.group)
        try:
            await self._places.keep(track, place)
        except StoreUnavailable as exc:
            log.warning("card %s: not recorded, its buttons will not work: %s", track, exc)
