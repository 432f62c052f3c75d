"""What the gateway owes the users of one web bot, kept in the store so that it reaches them
whichever instance holds their socket, and after they reconnect.

The worker answering a message may run on another instance than the one holding the user's
socket (the durable inbox hands jobs to any instance). So a reply sink never writes to a
socket: it posts each frame here, which

- publishes it on the user's channel (`Broadcast`), where every instance holding one of the
  user's sockets forwards it, and
- keeps the latest frame of each answer (`SharedState`), 15 minutes while the answer is
  being written and a minute after its last frame, with an index of the user's answers, so a
  socket that (re)connects replays what it missed: the frames carry the whole text, so the
  latest one is all a late socket needs.

Each frame travels as a record `{"seq": …, "frame": …}`: a socket that gets the same answer
from the replay and from the channel keeps only the newest (`seq` grows with time, so an
attempt that takes over an answer on another instance supersedes the one before).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.web.frames import Frame
from gateway.store import keys
from gateway.store.base import Broadcast, SharedState, Subscription

log = logging.getLogger(__name__)

KEEP_OPEN_S = 15 * 60.0  # an answer still being written (refreshed by each frame)
KEEP_DONE_S = 60.0  # after its final frame: "reconnects within a minute"
MAX_OWED = 50  # answers remembered per user; older ones are dropped from the index


class MailboxStore(SharedState, Broadcast, Protocol):
    """The parts of the store a mailbox uses."""


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    frame: Frame

    @property
    def reply_to(self) -> str:
        return str(self.frame.get("reply_to") or "")

    def encode(self) -> str:
        return json.dumps({"seq": self.seq, "frame": self.frame}, ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str) -> Record | None:
        try:
            data: Any = json.loads(raw)
            record = cls(int(data["seq"]), dict(data["frame"]))
        except (ValueError, TypeError, KeyError):
            return None
        return record if record.reply_to else None


class Mailbox:
    def __init__(self, store: MailboxStore, bot: str) -> None:
        self._store = store
        self._bot = bot
        self._last_seq = 0

    def _seq(self) -> int:
        self._last_seq = max(time.time_ns(), self._last_seq + 1)
        return self._last_seq

    async def open(self, user: str, reply_to: str) -> None:
        """Note that `user` is owed an answer to `reply_to` (before its first frame)."""
        index = keys.web_owed(self._bot, user)
        owed = await self._owed_ids(index)
        if reply_to not in owed:
            owed = [*owed, reply_to][-MAX_OWED:]
            await self._store.set(index, json.dumps(owed), KEEP_OPEN_S)

    async def post(self, user: str, frame: Frame, *, last: bool) -> None:
        """Deliver `frame` to the user's sockets and keep it for a reconnect."""
        record = Record(self._seq(), frame)
        data = record.encode()
        ttl = KEEP_DONE_S if last else KEEP_OPEN_S
        await self._store.set(keys.web_answer(self._bot, user, record.reply_to), data, ttl)
        await self._store.publish(keys.web_channel(self._bot, user), data)

    async def notify(self, user: str, frame: Frame) -> None:
        """Deliver `frame` to the user's sockets, not kept: a frame that adds to an answer
        already delivered (its controls after a click), which a reconnect does not need."""
        record = Record(self._seq(), frame)
        await self._store.publish(keys.web_channel(self._bot, user), record.encode())

    async def owed(self, user: str) -> list[Record]:
        """The latest frame of each answer the user may have missed, oldest answer first."""
        records = []
        for reply_to in await self._owed_ids(keys.web_owed(self._bot, user)):
            raw = await self._store.get(keys.web_answer(self._bot, user, reply_to))
            record = None if raw is None else Record.decode(raw)
            if record is not None:
                records.append(record)
        return records

    async def listen(self, user: str) -> Subscription:
        return await self._store.subscribe(keys.web_channel(self._bot, user))

    async def _owed_ids(self, index: str) -> list[str]:
        raw = await self._store.get(index)
        try:
            ids = json.loads(raw) if raw else []
        except ValueError:
            log.warning("web %s: unreadable answer index %s, starting afresh", self._bot, index)
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
