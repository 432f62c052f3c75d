"""`SharedState` (values and counters with a TTL), on every backend."""

from __future__ import annotations

import asyncio

from gateway.store.base import SharedState


async def test_key_values_with_ttl(store: SharedState) -> None:
    await store.set("k", "v")
    await store.set("brief", "x", ttl=0.2)
    assert await store.get("k") == "v"
    assert await store.get("brief") == "x"
    await asyncio.sleep(0.3)
    assert await store.get("brief") is None
    await store.delete("k")
    assert await store.get("k") is None


async def test_incr(store: SharedState) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 2) == 3
    assert await store.incr("n", -1) == 2
    assert await store.incr("gone", ttl=0.2) == 1
    await asyncio.sleep(0.3)
    assert await store.incr("gone", ttl=0.2) == 1


async def test_deleting_an_absent_key_changes_nothing(store: SharedState) -> None:
    await store.set("kept", "v")
    await store.delete("never-set")
    assert await store.get("never-set") is None
    assert await store.get("kept") == "v"
