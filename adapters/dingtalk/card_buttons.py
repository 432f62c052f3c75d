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
- The answer's last card, when the run paused on a form, shows the form's actions instead:
  `formAction1..5` (`showFormAction1..5`), the first `MAX_FORM_ACTIONS` of them; the form's
  text with all its actions numbered stays in the card, for a template without them and
  for a reply in words. A click answers the form with its fields' defaults.
- A click's sink updates the card clicked: the rating chosen (kept with the card's record,
  so that a click on the chosen one withdraws it); for a form's action, once Dify took the
  answer, the buttons hidden and `formChosen` (`showFormChosen`) saying which was taken.

Each card with buttons is recorded in the store before it is created (`CardPlace`), so a
click on it, which names only the card, finds its answer and its conversation; a card
that ends with a form's actions is recorded again, with the form, before it shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.card_clicks import MAX_FORM_ACTIONS, CardPlace, CardPlaces
from adapters.dingtalk.reply import Destination
from adapters.dingtalk.sink import CardSink
from gateway.controls import MAX_SUGGESTIONS, Controls
from gateway.platform import PlatformError
from gateway.store.base import StoreUnavailable
from gateway.words import Words

log = logging.getLogger(__name__)

BUILTIN_AI_CARD = "382e4302-551d-4880-bf29-a30acfab2e71.schema"  # no buttons to bind
TRUE, FALSE = "true", "false"
NOTHING = Controls("")


def _flag(value: bool) -> str:
    return TRUE if value else FALSE


def variables(
    controls: Controls | None, *, writing: bool, stop_label: str, chosen: str = ""
) -> dict[str, str]:
    """Every button variable of a card: one being written (`writing`: its Stop), or one
    that ends with `controls` under it (None: nothing under it); `chosen`: the note of a
    card whose form was answered by a click. All of them each time, so an update leaves
    no button of an earlier state behind."""
    shown = controls if controls is not None else NOTHING
    form = None if writing else shown.form
    under = not writing and shown.final and form is None  # a form instead of 👍/👎
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
    actions = form.actions[:MAX_FORM_ACTIONS] if form is not None else ()
    for i in range(MAX_FORM_ACTIONS):
        params[f"formAction{i + 1}"] = _title(actions[i]) if i < len(actions) else ""
        params[f"showFormAction{i + 1}"] = _flag(i < len(actions))
    params["formChosen"] = chosen
    params["showFormChosen"] = _flag(bool(chosen))
    return params


def _title(action: tuple[str, str, str]) -> str:
    """A form action's button label: its title (its id if it has none)."""
    ident, title, _ = action
    return title or ident


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
        chosen: str = "",
    ) -> None:
        super().__init__(api, destination, template_id, resume, words=words)
        self._stop_label = words.stop_button
        self._places = places
        self._controls: Controls | None = None
        self._clicked = clicked  # a click's sink: the card clicked
        # A click on a form's action (its title): the answer begun is the resumed run's.
        self._chosen = words.form_chosen(chosen) if chosen else ""

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

    # --- ReplySink, where a form is involved --------------------------------------------

    async def begin(self) -> None:
        """The resumed run of a form answered by a click begins: first the card clicked
        says which action was taken, its buttons hidden (best effort: the answer matters
        more)."""
        if self._clicked and self._chosen:
            label = self._stop_label
            params = variables(None, writing=False, stop_label=label, chosen=self._chosen)
            try:
                await self._api.update_card(self._clicked, params)
            except PlatformError as exc:
                log.info("card %s: the form's answer is not shown: %s", self._clicked, exc)
        await super().begin()

    async def finish(self, text: str, *, last: bool) -> None:
        """A card that ends showing a form's actions is recorded with the form first, so
        a click on one finds it."""
        if last and self._open is not None and self._form() is not None:
            await self._record(self._open)
        await super().finish(text, last=last)

    # --- CardSink hooks ------------------------------------------------------------------

    def _variables(self, *, writing: bool, final: bool) -> dict[str, str]:
        if self._controls is None:
            return {}
        shown = self._controls if writing or final else None
        return variables(shown, writing=writing, stop_label=self._stop_label)

    async def _placing(self, track: str) -> None:
        """Record where the card goes before it exists, so even a click at once finds it."""
        await self._record(track)

    # --- helpers -------------------------------------------------------------------------

    def _form(self) -> tuple[str, tuple[tuple[str, str], ...]] | None:
        """The form whose actions the card that ends the answer shows: its token and the
        buttons' (action id, title)."""
        form = self._controls.form if self._controls is not None else None
        if form is None:
            return None
        return form.token, tuple((a[0], _title(a)) for a in form.actions[:MAX_FORM_ACTIONS])

    async def _record(self, track: str) -> None:
        """Keep the card's record. Best effort: without it, a click on the card says it
        expired."""
        if self._controls is None:
            return
        token, actions = self._form() or ("", ())
        answer, to = self._controls.answer_id, self._to
        place = CardPlace(answer, to.conversation_id, to.group, form=token, actions=actions)
        try:
            await self._places.keep(track, place)
        except StoreUnavailable as exc:
            log.warning("card %s: not recorded, its buttons will not work: %s", track, exc)
