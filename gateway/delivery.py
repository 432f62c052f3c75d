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

    def for_bot(self, bot: str) -> Deliver:
        """One bot's `AdapterContext.deliver`."""
        return functools.partial(self.deliver, bot)

    async def deliver(self, bot: str, read: Read) -> Delivery:
        """The verdict on one delivery to `bot`. Never raises (but for cancellation)."""
        if self._draining():
            log.info("bot %s: shutting down; leaving a delivery to be delivered again", bot)
            return Delivery.REDELIVER
        try:
            outcome = await _outcome(read)
        except NotReady as exc:
            log.warning("bot %s: not ready; leaving a delivery to be delivered again: %s", bot, exc)
            return Delivery.REDELIVER
        except WebhookRejected as exc:
            log.warning("bot %s: dropping a delivery: %s", bot, exc)
            return Delivery.ACK
        except StoreUnavailable as exc:
            # Some readings use the store (the WeCom AI bot's admission).
            log.error("bot %s: store unavailable; not acking a delivery: %s", bot, exc)
            return Delivery.REDELIVER
        except Exception:
            # An adapter bug on odd input: a redelivery would hit it again (the edge: 400).
            log.exception("bot %s: could not read a delivery; acking it anyway", bot)
            return Delivery.ACK
        if not isinstance(outcome, Messages):
            return Delivery.ACK
        if self._draining():
            # The shutdown began while the adapter was reading: claim nothing now.
            log.info("bot %s: shutting down; leaving a delivery to be delivered again", bot)
            return Delivery.REDELIVER
        try:
            await self._accept(outcome.messages)
        except NotReady as exc:  # the bot was removed by a reload a moment ago
            log.warning("bot %s: leaving a delivery to be delivered again: %s", bot, exc)
            return Delivery.REDELIVER
        except StoreUnavailable as exc:
            log.error("bot %s: store unavailable; not acking a delivery: %s", bot, exc)
            return Delivery.REDELIVER
        except Exception:
            # Not the delivery's fault (the edge answers 503 here): let the platform retry.
            log.exception("bot %s: could not accept a delivery; not acking it", bot)
            return Delivery.REDELIVER
        return Delivery.ACK


async def _outcome(read: Read) -> Outcome:
    reading = read()
    if isinstance(reading, Answered | Messages | Ignored):
        return reading
    return await reading
