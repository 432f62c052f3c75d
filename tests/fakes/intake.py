"""The core's side of `AdapterContext.deliver`, for adapter unit tests outside a gateway: the
real ack rule (`gateway.delivery.Deliveries`) around an inbox that records what it accepts,
and that can fail like a store that is down or be put into shutdown."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.delivery import Deliveries
from gateway.models import InboundMessage
from gateway.platform import Deliver
from gateway.store.base import StoreUnavailable


class RecordingIntake:
    def __init__(self, bot: str = "bot") -> None:
        self.accepted: list[InboundMessage] = []
        self.fail = False  # accepting raises StoreUnavailable
        self.draining = False  # the gateway is shutting down
        self.deliver: Deliver = Deliveries(self._accept, lambda: self.draining).for_bot(bot)

    async def _accept(self, messages: Sequence[InboundMessage]) -> None:
        if self.fail:
            raise StoreUnavailable("store down (injected)")
        self.accepted.extend(messages)
