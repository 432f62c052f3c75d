"""Each HTTP-mode `sign` is accepted once.

DingTalk signs only the timestamp (verify.py), so one captured timestamp/sign pair would
otherwise carry any number of forged bodies for as long as it is valid, each with a new
msgId (so the dedupe lets it through) and a sender of the forger's choosing. The first
request accepted with a sign claims it in the store for the rest of its validity; another
body with that sign is refused (401).

A retry of the same callback. The stored platform reference does not say how DingTalk
retries an HTTP-mode callback, nor whether a retry keeps its timestamp and sign. Both cases
work: a retry with a new timestamp carries a new sign and meets the msgId dedupe like any
retry; a retry that reuses the sign is told apart by its msgId, which the first acceptance
recorded, and goes on to the same dedupe, which answers it as a duplicate (or accepts it
when the first attempt never reached the inbox, e.g. the store failed in between).

This is the one store side effect of verifying a DingTalk callback, and it runs only after
the pure checks passed. A store that does not answer raises `StoreUnavailable` (the edge
answers 503 and DingTalk may try again), never a 401.
"""

from __future__ import annotations

from typing import Protocol

from gateway.platform import VerificationFailed
from gateway.store import keys
from gateway.store.base import Claims, SharedState


class LedgerStore(Claims, SharedState, Protocol):
    """The parts of the store the ledger uses."""


class SignLedger:
    def __init__(self, store: LedgerStore, bot: str) -> None:
        self._store = store
        self._bot = bot

    async def accept(self, sign: str, msg_id: str, ttl: float) -> None:
        """Accept `sign` for the message `msg_id`, remembering it for `ttl` seconds.

        Raises `VerificationFailed` when the sign was accepted before for another message
        (or for one whose record is missing), `StoreUnavailable` when the store fails."""
        if await self._store.claim([keys.dingtalk_sign(self._bot, sign)], ttl):
            await self._store.set(keys.dingtalk_signed_message(self._bot, sign), msg_id, ttl)
            return
        first = await self._store.get(keys.dingtalk_signed_message(self._bot, sign))
        if first is None or first != msg_id:
            raise VerificationFailed("sign already used for another message (a replay)")
