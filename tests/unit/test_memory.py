"""Memory after a burst comes back: answers leave no reference cycles for the (rare) full
collections, and glibc's free pages are handed back after them. The figures are in
bench/README.md ("Memory after a burst"); these tests pin the mechanisms."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway import gc_tuning, transport
from gateway.emulator import DifyEmulator, ScriptedReply
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def no_automatic_collections() -> Iterator[None]:
    """What cycles an answer leaves must still be there to count afterwards."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cyclic_garbage() -> list[object]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def answer_some(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, n: int
) -> None:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["One", " two", " three."])
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    await wait_for(lambda: gateway.adapters["s"].ready)
    for i in range(n):
        body = body_of(envelope(direct(f"question {i}", user=f"U{i}")))
        assert (await client.post("/webhooks/s", data=body, headers=signed_headers(body))).status
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    assert len(dify.requests) == n


@pytest.mark.usefixtures("no_automatic_collections")
async def test_answers_leave_no_response_cycles_behind(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    await answer_some(gateway_factory, dify, slack, 10)
    left = [o for o in cyclic_garbage() if isinstance(o, httpx.Response)]
    assert left == []


@pytest.mark.usefixtures("no_automatic_collections")
async def test_without_the_fix_every_response_is_left_in_a_cycle(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test above can fail: httpx's own close leaves the cycle."""
    monkeypatch.setattr(transport._Response, "aclose", httpx.Response.aclose)
    await answer_some(gateway_factory, dify, slack, 10)
    left = [o for o in cyclic_garbage() if isinstance(o, transport._Response)]
    assert len(left) >= 10  # at least the Dify stream of every answer


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_pages_go_back_after_a_full_collection() -> None:
    assert gc_tuning.MALLOC_TRIM is not None
    # 40 MB in blocks malloc serves from its heap (over pymalloc's 512 bytes, under the
    # 128 KiB that would get their own mapping); the last one keeps the heap's top in use,
    # so freeing the others leaves free pages inside the heap, which glibc keeps.
    blocks = [bytearray(8000) for _ in range(5000)]
    last = blocks.pop()
    before = resident_bytes()
    blocks.clear()
    kept = resident_bytes()
    gc_tuning.release_memory()
    after = resident_bytes()
    assert kept > before - 10_000_000  # free() alone gave back little ...
    assert after < kept - 20_000_000  # ... the trim most of the 40 MB
    assert len(last) == 8000
