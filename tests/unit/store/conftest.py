"""Every test here that takes `store` runs once per backend: memory, SQLite, a real Redis and
a real Redis Cluster. A test of some backends narrows them with
`@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.store.base import Store
from gateway.store.factory import open_store
from tests import redis_servers

BACKENDS = ["memory", "sqlite", "redis", "redis-cluster"]
REDIS_FIXTURES = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}


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
    url = request.getfixturevalue(REDIS_FIXTURES[backend])
    return lambda: open_store(url)


@pytest.fixture
async def store(
    backend: str, make_store: Callable[[], Store], request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    if backend in REDIS_FIXTURES:
        # Each test worker has its own Redis database and its own cluster: start every test
        # from an empty one.
        await redis_servers.flush(request.getfixturevalue(REDIS_FIXTURES[backend]))
    s = make_store()
    if backend == "redis-cluster":
        # The cluster client learns the cluster's layout on its first command (~50 ms):
        # learn it now, so that the tests time only what they test.
        await s.ping()
    yield s
    await s.aclose()
