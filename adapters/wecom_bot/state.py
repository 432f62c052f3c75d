"""WeCom AI-bot state shared through the store, so any instance can answer a callback.

- **Stream state**: the current `content` and `finish` of one stream. The reply sink writes
  it; a stream refresh callback (which may land on any instance) reads it.
- **In-flight count** per user: WeCom lets one user have at most 3 answers in flight with
  one bot (doc path/100719). The count has a TTL, so a crashed worker cannot lock a user
  out for longer than one stream window.
- **First sight** of a msgid: a retried callback must neither count again nor start a
  second answer.
- **Cards** of buttons the gateway sent, by task id (cards.py), for the card update that
  answers a click on any instance; kept as long as an answer's record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from adapters.wecom_bot.cards import Card
from adapters.wecom_bot.convert import CardClick
from gateway.answers import RECORD_TTL
from gateway.store import keys
from gateway.store.base import Claims, SharedState
from gateway.words import Words

MAX_IN_FLIGHT = 3
WECOM_STREAM_WINDOW = 360.0  # WeCom stops refreshing 6 min after the user's message
STATE_TTL = 3600.0  # as long as the response_url lives; a retry after that is long gone
COUNT_TTL = WECOM_STREAM_WINDOW + 60.0
STALE_GRACE = 15.0  # past close_at + this, an unfinished stream's worker is gone


@dataclass(frozen=True, slots=True)
class StreamState:
    content: str
    finish: bool
    close_at: float  # when our sink closes the stream at the latest (epoch seconds)
    refused: bool = False
    items: tuple[dict[str, Any], ...] = ()  # images of the final reply (`msg_item`)

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> StreamState | None:
        try:
            data = json.loads(raw)
            return cls(
                content=str(data["content"]),
                finish=bool(data["finish"]),
                close_at=float(data["close_at"]),
                refused=bool(data.get("refused", False)),
                items=tuple(i for i in data.get("items", ()) if isinstance(i, dict)),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def as_seen(self, now: float, interrupted: str) -> StreamState:
        """What a refresh should show: a stream whose worker vanished (a crash, a deploy)
        long after it should have closed is closed here, with the note `interrupted`, so
        WeCom stops spinning."""
        if self.finish or now < self.close_at + STALE_GRACE:
            return self
        content = f"{self.content}\n\n{interrupted}"
        return StreamState(content, True, self.close_at, self.refused, self.items)


class BotStore(Claims, SharedState, Protocol):
    """The parts of the store `BotState` uses: a claim for first sight, values for the rest."""


class BotState:
    def __init__(self, store: BotStore, bot: str) -> None:
        self._store = store
        self._bot = bot

    async def read(self, sid: str) -> StreamState | None:
        raw = await self._store.get(keys.wecom_bot_stream(self._bot, sid))
        return StreamState.loads(raw) if raw is not None else None

    async def write(self, sid: str, state: StreamState) -> None:
        await self._store.set(keys.wecom_bot_stream(self._bot, sid), state.dumps(), STATE_TTL)

    async def first_sight(self, msgid: str) -> bool:
        """True the first time this msgid is seen (atomically, across instances)."""
        return await self._store.claim([keys.wecom_bot_first_sight(self._bot, msgid)], STATE_TTL)

    async def enter(self, user: str) -> bool:
        """Count one more answer in flight for `user`; False (and nothing counted) when
        they already have the maximum."""
        key = keys.wecom_bot_in_flight(self._bot, user)
        if await self._store.incr(key, 1, COUNT_TTL) <= MAX_IN_FLIGHT:
            return True
        await self._store.incr(key, -1, COUNT_TTL)
        return False

    async def leave(self, user: str) -> None:
        key = keys.wecom_bot_in_flight(self._bot, user)
        if await self._store.incr(key, -1, COUNT_TTL) < 0:
            # The count expired while this answer ran: don't leave it negative.
            await self._store.set(key, "0", COUNT_TTL)

    async def keep_card(self, card: Card) -> None:
        key = keys.wecom_bot_card(self._bot, card.task_id)
        await self._store.set(key, card.encode(), RECORD_TTL)

    async def card(self, task_id: str) -> Card | None:
        raw = await self._store.get(keys.wecom_bot_card(self._bot, task_id))
        return None if raw is None else Card.decode(raw)

    async def card_clicked(self, click: CardClick, words: Words) -> dict[str, Any] | None:
        """The clicked card redrawn, the button marked (None: a card the store no longer
        knows, or a form's card clicked by someone else than the asker, whom the core may
        refuse: the card stays as it is)."""
        card = await self.card(click.task_id)
        if card is None or (card.asker and card.asker != click.click.user_id):
            return None
        return card.chosen(click.key, words)
