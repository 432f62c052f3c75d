"""The ack rule of long connections: one call turns a delivery into "ack" or "redeliver".

Slack Socket Mode, Feishu's long connection, DingTalk Stream and the WeCom AI bot's WebSocket
each acknowledge a delivery their own way (an envelope id, a `{"code":200}` frame, a Stream
ack, a reply frame), but they all need the same answer from the core: may it be acked? A
transport hands over its reading of the delivery (`Read`) and gets a `Delivery` back:

- messages accepted into the inbox, or duplicates: ACK;
- a malformed or ignorable delivery: ACK, logged (a redelivery would be just as bad);
- the store could not take it (`StoreUnavailable`), the adapter is not ready (`NotReady`),
  or the gateway is shutting down: REDELIVER, so the platform delivers it again, maybe to
  another instance.

While the gateway shuts down the reading is not even run, so nothing is claimed: the delivery
is still new to whichever instance gets it next. Acking it and then dropping it with the
process would lose it. The HTTP edge applies the same rules with statuses (gateway/http.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.logs import LogLimiter
from gateway.models import Answered, Ignored, InboundMessage, Messages, Outcome
from gateway.platform import Deliver, Delivery, NotReady, Read, WebhookRejected
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

# Accepts messages into the inbox (`Intake.accept`); raises `StoreUnavailable`.
Accept = Callable[[Sequence[InboundMessage]], Awaitable[None]]


class Deliveries:
    """`deliver()` for every long-connection adapter. `draining()` says the gateway is
    shutting down (`Gateway.begin_shutdown`)."""

    def __init__(self, accept: Accept, draining: Callable[[], bool]) -> None:
        self._accept = accept
        self._draining = draining
        # A flood over a long connection (deliveries refused while the store is away or the
        # inbox is full, malformed ones) must not flood the log: a few lines a minute per
        # bot and kind, then a count; at most one traceback a minute per bot.
        self._lines = LogLimiter(log)
        self._tracebacks = LogLimiter(log, burst=1)

    def for_bot(self, bot: str) -> Deliver:
        """One bot's `AdapterContext.deliver`."""
        return functools.partial(self.deliver, bot)

    async def deliver(self, bot: str, read: Read) -> Delivery:
        """The verdict on one delivery to `bot`. Never raises (but for cancellation)."""
        if self._draining():
            self._log_draining(bot)
            return Delivery.REDELIVER
        try:
            outcome = await _outcome(read)
        except NotReady as exc:
            self._lines.log(
                f"bot {bot}: deliveries left (not ready)",
                logging.WARNING,
                "bot %s: not ready; leaving a delivery to be delivered again: %s",
                bot,
                exc,
            )
            return Delivery.REDELIVER
        except WebhookRejected as exc:
            self._lines.log(
                f"bot {bot}: deliveries dropped",
                logging.WARNING,
                "bot %s: dropping a delivery: %s",
                bot,
                exc,
            )
            return Delivery.ACK
        except StoreUnavailable as exc:
            # Some readings use the store (the WeCom AI bot's admission).
            self._log_unavailable(bot, exc)
            return Delivery.REDELIVER
        except Exception:
            # An adapter bug on odd input: a redelivery would hit it again (the edge: 400).
            self._log_failed(bot, "could not read a delivery; acking it anyway")
            return Delivery.ACK
        if not isinstance(outcome, Messages):
            return Delivery.ACK
        if self._draining():
            # The shutdown began while the adapter was reading: claim nothing now.
            self._log_draining(bot)
            return Delivery.REDELIVER
        try:
            await self._accept(outcome.messages)
        except NotReady as exc:  # the bot was removed by a reload a moment ago
            self._lines.log(
                f"bot {bot}: deliveries left (removed)",
                logging.WARNING,
                "bot %s: leaving a delivery to be delivered again: %s",
                bot,
                exc,
            )
            return Delivery.REDELIVER
        except StoreUnavailable as exc:
            self._log_unavailable(bot, exc)
            return Delivery.REDELIVER
        except Exception:
            # Not the delivery's fault (the edge answers 503 here): let the platform retry.
            self._log_failed(bot, "could not accept a delivery; not acking it")
            return Delivery.REDELIVER
        return Delivery.ACK

    def _log_draining(self, bot: str) -> None:
        self._lines.log(
            f"bot {bot}: deliveries left (shutting down)",
            logging.INFO,
            "bot %s: shutting down; leaving a delivery to be delivered again",
            bot,
        )

    def _log_unavailable(self, bot: str, exc: Exception) -> None:
        self._lines.log(
            f"bot {bot}: deliveries left (store unavailable)",
            logging.ERROR,
            "bot %s: store unavailable; not acking a delivery: %s",
            bot,
            exc,
        )

    def _log_failed(self, bot: str, what: str) -> None:
        """An unexpected exception (being handled): its traceback at most once a minute."""
        if self._tracebacks.allow(f"bot {bot}: delivery errors"):
            log.exception("bot %s: %s", bot, what)
        else:
            self._lines.log(
                f"bot {bot}: delivery errors",
                logging.ERROR,
                "bot %s: %s (tracebacks: at most one a minute)",
                bot,
                what,
            )


async def _outcome(read: Read) -> Outcome:
    reading = read()
    if isinstance(reading, Answered | Messages | Ignored):
        return reading
    return await reading
