"""What every fuzz target asserts, and the stand-ins it needs.

The property, for any input: a parser or verifier returns, or raises the adapter's clean
rejection (`MalformedRequest`, `VerificationFailed`, `NotReady`, or a frame codec's own
`FrameError`); an adapter's `handle()` returns an `Outcome` whose messages the inbox can
store as JSON. Anything else is a defect: the HTTP edge would log a traceback for it.

Long connections swallow errors on purpose (a transport must outlive a bad frame), so their
targets run with `Reads`, a `deliver` that records what a reading raised instead of letting
a transport's catch-all hide it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import TypeAdapter

from gateway.models import Answered, Ignored, InboundMessage, Messages, Outcome, WebhookRequest
from gateway.platform import (
    Delivery,
    MalformedRequest,
    NotReady,
    Read,
    VerificationFailed,
)

CLEAN = (MalformedRequest, VerificationFailed, NotReady)
_MESSAGE_JSON: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


class NoAssistant:
    async def opening_statement(self, message: InboundMessage) -> str | None:
        return None

    async def feedback(self, job_id: str, rating: Literal["like", "dislike"] | None) -> None:
        return None


def request(
    body: bytes,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    received_at: float | None = None,
) -> WebhookRequest:
    return WebhookRequest(
        method,
        "/webhooks/fuzz",
        dict(query or {}),
        {k.lower(): v for k, v in (headers or {}).items()},
        body,
        time.time() if received_at is None else received_at,
    )


def check_outcome(outcome: object) -> None:
    """An outcome, and every message in it survives the inbox's JSON round trip."""
    assert isinstance(outcome, Answered | Messages | Ignored), f"not an outcome: {outcome!r}"
    if isinstance(outcome, Messages):
        for message in outcome.messages:
            assert isinstance(message, InboundMessage)
            _MESSAGE_JSON.validate_json(_MESSAGE_JSON.dump_json(message))


async def check_handle(handle: Callable[[WebhookRequest], Awaitable[Outcome]], req: Any) -> None:
    """`handle(req)` returns an outcome or raises a clean rejection; nothing else."""
    try:
        outcome = await handle(req)
    except CLEAN:
        return
    check_outcome(outcome)


class Reads:
    """A long connection's `deliver`: reads the delivery like the core does, but records
    anything but a clean rejection (a transport's catch-all would hide it)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.count = 0

    async def deliver(self, read: Read) -> Delivery:
        self.count += 1
        try:
            reading = read()
            outcome = reading if not asyncio.iscoroutine(reading) else await reading
            check_outcome(outcome)
        except CLEAN:
            return Delivery.ACK
        except Exception:
            self.violations.append(traceback.format_exc())
        return Delivery.ACK

    def assert_clean(self) -> None:
        assert not self.violations, self.violations[0]
