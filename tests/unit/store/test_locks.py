"""`Locks`, on every backend; and the in-process `KeyedLocks` behind memory and SQLite."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.store.base import Locks
from gateway.store.local_locks import KeyedLocks


async def test_lock_is_exclusive_and_ordered(store: Locks) -> None:
    order: list[str] = []

    async def hold(name: str, pause: float) -> None:
        async with store.lock("conv"):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    first = asyncio.create_task(hold("a", 0.1))
    await asyncio.sleep(0.02)
    await asyncio.gather(first, hold("b", 0.0))
    assert order == ["a+", "a-", "b+", "b-"]


async def test_keyed_locks_forget_keys_nobody_holds_or_waits_for() -> None:
    locks = KeyedLocks()
    async with locks.hold("conv"):
        waiter = asyncio.create_task(locks.hold("conv").__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()  # gave up waiting: must not leave a user behind
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    assert locks._locks == {}
    async with locks.hold("conv"):  # and the key is free again
        pass
    assert locks._locks == {}


async def test_a_lock_does_not_block_other_keys(store: Locks) -> None:
    async with store.lock("conv-a"):
        async with asyncio.timeout(1.0):  # would hang if the keys shared one lock
            async with store.lock("conv-b"):
                pass
