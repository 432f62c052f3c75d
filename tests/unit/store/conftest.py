"""Every test here that takes `store` runs once per backend: memory, SQLite and a real Redis.
A test of one backend narrows it with `@pytest.mark.parametrize("backend", ["redis"])`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store.base import Store
from gateway.store.factory import open_store

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory: calling it twice gives two handles on the same storage (two instances
    of the gateway, or one restarted), except for memory, which shares nothing."""
    if backend == "memory":
        shared = open_store("memory://")
        return lambda: shared
    if backend == "sqlite":
        path = tmp_path / "store.db"
        return lambda: open_store(f"sqlite:///{path}")
    url = request.getfixturevalue("redis_url")
    return lambda: open_store(url)


@pytest.fixture
async def store(
    backend: str, make_store: Callable[[], Store], request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    if backend == "redis":
        # Each test worker has its own Redis database: start every test from an empty one.
        flush = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
        await flush.flushdb()
        await flush.aclose()
    s = make_store()
    yield s
    await s.aclose()
