"""`Claims` (dedupe), on every backend."""

from __future__ import annotations

import asyncio

from gateway.store.base import Claims


async def test_claim_is_all_or_nothing(store: Claims) -> None:
    assert await store.claim(["a", "b"], 60)
    assert not await store.claim(["b", "c"], 60)
    assert await store.claim(["c"], 60)  # "c" was not claimed by the failed attempt
    assert not await store.claim(["a"], 60)


async def test_claims_expire(store: Claims) -> None:
    assert await store.claim(["short"], 0.2)
    assert not await store.claim(["short"], 0.2)
    await asyncio.sleep(0.3)
    assert await store.claim(["short"], 0.2)


async def test_concurrent_claims_of_one_key_let_exactly_one_through(store: Claims) -> None:
    results = await asyncio.gather(*(store.claim(["race", f"other-{i}"], 60) for i in range(50)))
    assert sum(results) == 1


async def test_claims_at_once_are_decided_in_order_and_all_or_nothing(store: Claims) -> None:
    # SQLite decides a whole tick's claims in one batch (in arrival order; Redis in whichever
    # order the commands land): exactly one of two overlapping claims wins, and the loser
    # keeps none of its keys.
    first, second, apart = await asyncio.gather(
        store.claim(["a", "b"], 60), store.claim(["b", "c"], 60), store.claim(["d"], 60)
    )
    assert first != second and apart
    loser_only_key = "c" if first else "a"
    assert await store.claim([loser_only_key], 60)
    assert not await store.claim(["b"], 60)
    assert not await store.claim(["d"], 60)
