"""What only the Redis store does: share state between instances, and fail cleanly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.store.base import Store, StoreUnavailable
from gateway.store.redis import RedisStore


@pytest.mark.parametrize("backend", ["redis"])
async def test_a_second_instance_sees_the_same_state(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Another instance on the same Redis sees conversations and claims at once.
    (memory:// keeps nothing across instances, by design.)"""
    await store.set_conversation("c", "conv-9")
    assert await store.claim(["event:1"], 60)
    other = make_store()
    try:
        assert await other.get_conversation("c") == "conv-9"
        assert not await other.claim(["event:1"], 60)
    finally:
        await other.aclose()


async def test_an_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await store.claim(["x"], 1)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()
