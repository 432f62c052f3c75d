"""`Conversations`, on every backend."""

from __future__ import annotations

from gateway.store.base import Conversations


async def test_conversations(store: Conversations) -> None:
    assert await store.get_conversation("app/user:bot:U1") is None
    await store.set_conversation("app/user:bot:U1", "conv-1")
    await store.set_conversation("app/user:bot:U1", "conv-2")
    assert await store.get_conversation("app/user:bot:U1") == "conv-2"
    assert await store.delete_conversation("app/user:bot:U1")
    assert not await store.delete_conversation("app/user:bot:U1")
    assert await store.get_conversation("app/user:bot:U1") is None
