"""One web chat socket, from the upgrade to the close.

Reading: each `message` frame goes through the same intake as every platform's messages
(`AdapterContext.deliver`: route, dedupe by the client's message id, the durable inbox), at
most `messages_per_minute` per socket. A message the core cannot take now (the gateway is
shutting down, the store is away) closes the socket with 1013, and the page resends it after
reconnecting, maybe to another instance; dedupe makes that safe.

Writing: the socket listens to the user's channel in the store, where reply sinks on any
instance post their frames (mailbox.py), and first replays the latest frame of each answer
the user may have missed. Frames pass through a bounded outbox (outbox.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.web import frames
from adapters.web.convert import click_to_inbound, to_inbound
from adapters.web.frames import BadFrame, ClientClick, ClientMessage
from adapters.web.mailbox import Mailbox, Record
from adapters.web.outbox import DEFAULT_LIMIT, DEFAULT_STALL_S, TRY_AGAIN_LATER, Outbox
from adapters.web.verify import WebUser
from gateway.models import Messages
from gateway.platform import Deliver, Delivery, ServedSocket
from gateway.store.base import GAP, SharedState, StoreUnavailable, Subscription
from gateway.words import Words

log = logging.getLogger(__name__)

MAX_TRACKED_ANSWERS = 256  # answers whose newest frame a socket remembers (see _offer)


@dataclass(frozen=True, slots=True)
class Limits:
    messages_per_minute: int
    outbox_answers: int = DEFAULT_LIMIT
    stall_s: float = DEFAULT_STALL_S


class RateLimit:
    """At most `per_minute` messages in any 60 seconds (a sliding window)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._sent: collections.deque[float] = collections.deque()

    def allow(self) -> bool:
        now = self._clock()
        while self._sent and self._sent[0] <= now - 60.0:
            self._sent.popleft()
        if len(self._sent) >= self._per_minute:
            return False
        self._sent.append(now)
        return True


class ChatSession:
    def __init__(
        self,
        *,
        bot: str,
        user: WebUser,
        socket: ServedSocket,
        mailbox: Mailbox,
        store: SharedState,
        deliver: Deliver,
        words: Words,
        limits: Limits,
    ) -> None:
        self._bot = bot
        self._user = user
        self._socket = socket
        self._mailbox = mailbox
        self._store = store
        self._deliver = deliver
        self._words = words
        self._limits = limits
        self._rate = RateLimit(limits.messages_per_minute)
        self._newest: dict[str, int] = {}  # answer -> seq of the newest frame sent on
        self._outbox: Outbox | None = None

    async def run(self) -> None:
        try:
            subscription = await self._mailbox.listen(self._user.id)
        except StoreUnavailable as exc:
            log.warning("web %s: cannot listen for a user's answers: %s", self._bot, exc)
            await self._socket.close(TRY_AGAIN_LATER)
            return
        outbox = self._outbox = Outbox(
            self._socket,
            limit=self._limits.outbox_answers,
            stall_s=self._limits.stall_s,
            name=f"web {self._bot} socket",
        )
        forwarder = asyncio.create_task(self._forward(subscription))
        try:
            await self._replay()
            await self._read(outbox)
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            await subscription.aclose()
            await outbox.aclose()

    async def close(self, code: int) -> None:
        """End the session: the socket closes, and `run()` returns."""
        await self._socket.close(code)

    # --- to the page ---------------------------------------------------------------------

    async def _forward(self, subscription: Subscription) -> None:
        async for data in subscription:
            if data == GAP:  # messages may be lost: what the store kept is the truth
                await self._replay()
                continue
            record = Record.decode(data)
            if record is not None:
                self._offer(record)

    async def _replay(self) -> None:
        try:
            records = await self._mailbox.owed(self._user.id)
        except StoreUnavailable as exc:
            log.warning("web %s: could not replay a user's answers: %s", self._bot, exc)
            return
        for record in records:
            self._offer(record)

    def _offer(self, record: Record) -> None:
        """Send a frame on, unless the socket already had this one or a newer one of its
        answer (the replay and the channel may both bring it)."""
        answer = record.reply_to
        if self._newest.get(answer, -1) >= record.seq:
            return
        self._newest.pop(answer, None)  # re-inserted last: the oldest answers go first
        self._newest[answer] = record.seq
        if len(self._newest) > MAX_TRACKED_ANSWERS:
            del self._newest[next(iter(self._newest))]
        assert self._outbox is not None
        self._outbox.put(frames.encode(record.frame), answer)

    def _say_error(self, reply_to: str | None, text: str) -> None:
        assert self._outbox is not None
        self._outbox.put(frames.encode(frames.error(reply_to, text)), reply_to)

    # --- from the page -------------------------------------------------------------------

    async def _read(self, outbox: Outbox) -> None:
        while not outbox.closed.is_set():
            raw = await self._socket.receive()
            if raw is None:
                return
            if isinstance(raw, bytes):
                await self._socket.close(frames.UNSUPPORTED_DATA)
                return
            try:
                message = frames.parse_client_frame(raw)
            except BadFrame as exc:
                if exc.close_code:
                    log.info("web %s: bad frame, closing: %s", self._bot, exc)
                    await self._socket.close(exc.close_code)
                    return
                # Bad frames count against the socket's message budget, so a page that
                # sends them in a loop gets "too many" answers, not a log line each.
                if self._rate.allow():
                    log.info("web %s: bad frame: %s", self._bot, exc)
                    self._say_error(exc.reply_to, self._words.unreadable_message)
                else:
                    limit = self._limits.messages_per_minute
                    self._say_error(exc.reply_to, self._words.too_many_messages(limit))
                continue
            if message is None:
                continue  # a frame type this gateway does not know
            if not self._rate.allow():
                limit = self._limits.messages_per_minute
                self._say_error(message.id, self._words.too_many_messages(limit))
                continue
            verdict = await self._deliver(functools.partial(self._inbound, message))
            if verdict is Delivery.REDELIVER:
                await self._socket.close(TRY_AGAIN_LATER)
                return

    async def _inbound(self, message: ClientMessage | ClientClick) -> Messages:
        if isinstance(message, ClientClick):
            click = click_to_inbound(
                message, bot=self._bot, user=self._user, received_at=time.time()
            )
            return Messages((click,))
        inbound = await to_inbound(
            message, bot=self._bot, user=self._user, store=self._store, received_at=time.time()
        )
        return Messages((inbound,))
