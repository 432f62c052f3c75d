"""The ack path: route each message, apply the group and sender rules, accept it into the
inbox. The HTTP edge and every long-connection transport go through here, so a message is
treated the same however it arrived.

Order matters for Slack: a `message` event and an `app_mention` for one human message carry
the same (channel, ts) key. The rules run *before* the claim, so an ignored `message` (no
mention) never claims the key that the `app_mention` behind it needs.

Clicks (an `InboundMessage` with an `action`) take the same path: they need no mention in
a group (a button is addressed to the bot), and the ones that must not wait behind the
answer they are about get a lane of their own (gateway/commands.py), as `/stop` does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from gateway import commands, lifelog
from gateway.delivery import Deliveries
from gateway.inbox import Inbox
from gateway.metrics import Metrics
from gateway.models import ChatType, InboundMessage, Job
from gateway.platform import Adapter, Deliver, NotReady
from gateway.router import Router
from gateway.store import keys


class Intake:
    """`draining()` says the gateway is shutting down: long-connection deliveries are then
    left for redelivery (gateway/delivery.py); the HTTP edge answers 503 itself."""

    def __init__(
        self,
        router: Router,
        inbox: Inbox,
        metrics: Metrics,
        adapters: Mapping[str, Adapter],
        *,
        draining: Callable[[], bool],
    ) -> None:
        self._router = router
        self._inbox = inbox
        self._metrics = metrics
        self._adapters = adapters  # filled by the gateway after the adapters are built
        self._deliveries = Deliveries(self.accept, draining)
        self._claiming = 0  # messages on their way into the inbox
        # Whoever waits in settled() (the shutdown, once): woken when _claiming drops to 0.
        # Futures made only then, so the ack path counts and does nothing more.
        self._waiting: list[asyncio.Future[None]] = []

    def rewire(self, router: Router, adapters: Mapping[str, Adapter]) -> None:
        """Route with a reloaded config from the next message on."""
        self._router = router
        self._adapters = adapters

    def deliver_for(self, bot: str) -> Deliver:
        """The `AdapterContext.deliver` call of one bot."""
        return self._deliveries.for_bot(bot)

    async def settled(self) -> None:
        """Return once no claim is under way. A message whose claim was already on its way
        to the store when the shutdown began is acked once the claim lands, so the gateway
        lets it reach the inbox before the inbox stops taking jobs."""
        while self._claiming:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter

    async def accept(self, messages: Sequence[InboundMessage]) -> None:
        """Accept messages for answering. Raises `StoreUnavailable` (answer 503)."""
        now = time.time()
        for message in messages:
            bot = message.bot
            if bot not in self._adapters:
                # A long connection of a bot a reload removed, still open while its last
                # answers finish: leave the delivery unacked.
                raise NotReady(f"bot {bot} was removed by a reload")
            fate = "skipped"
            text = message.text
            clicked = message.action is not None
            if not message.from_bot and (
                (text and not text.isspace())
                or message.attachments
                or message.notice is not None
                or clicked
            ):
                decision = self._router.decide(
                    message, threaded_groups=self._adapters[bot].capabilities.threaded_groups
                )
                if (
                    message.chat_type != ChatType.GROUP
                    or message.mentioned
                    or clicked
                    or not decision.require_mention
                ):
                    job = self._router.job(message, decision, now)
                    self._claiming += 1
                    try:
                        accepted = await self._accept(job)
                    finally:
                        self._claiming -= 1
                        if not self._claiming and self._waiting:
                            self._wake_settled()
                    fate = "accepted" if accepted else "duplicate"
                    if accepted:
                        lifelog.accepted(job)
            self._metrics.count_event(bot, fate)

    async def _accept(self, job: Job) -> bool:
        """Claim and keep one routed message (and the quiet `/stop` a `/reset` brings)."""
        message = job.message
        claims = keys.dedupe_claims(message.bot, message.dedupe_keys) or [job.job_id]
        if commands.needs_own_lane(job):
            job = replace(job, lane=commands.own_lane(job))
        elif (
            message.action is None
            and not message.attachments
            and commands.command(message.text) == "/reset"
        ):
            # First the stop, then the reset: a retry of a delivery that failed between the
            # two finds the stop claimed, and the reset still to take.
            stop = commands.stop_before_reset(job)
            await self._inbox.accept(stop, [claim + commands.STOP_BEFORE_RESET for claim in claims])
        return await self._inbox.accept(job, claims)

    def _wake_settled(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)
