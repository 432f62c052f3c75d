"""The whole `Store`, on every backend: what is not one part's alone."""

from __future__ import annotations

from gateway.store.base import Store


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_the_parts_keep_their_keys_apart(store: Store) -> None:
    """One key string in every part names four different things (keys.py relies on it)."""
    await store.set_conversation("k", "conv-1")
    assert await store.claim(["k"], 60)
    async with store.lock("k"):
        assert await store.get("k") is None
        await store.set("k", "value")
    assert await store.get_conversation("k") == "conv-1"
    assert await store.get("k") == "value"
    assert await store.delete_conversation("k")
    assert await store.get("k") == "value"
    assert not await store.claim(["k"], 60)
