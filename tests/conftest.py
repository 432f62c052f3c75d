"""Shared fixtures: the Dify emulator, a gateway factory, and a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config import parse_config
from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from gateway.testing import GatewayTestServer

GatewayFactory = Callable[..., Awaitable[tuple[TestClient[Any, Any], Gateway]]]


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: $REDIS_URL if set (CI starts one), else a redis-server we start on a
    free loopback port. Skipped only outside CI when there is no redis-server at all."""
    if url := os.environ.get("REDIS_URL"):
        # Test workers run in parallel and tests flush their database: one database each.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        base = url.rsplit("/", 1)[0] if url.rsplit("/", 1)[-1].isdigit() else url.rstrip("/")
        yield f"{base}/{int(worker) + 1}"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs redis-server (install it, or set REDIS_URL)")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="dgw-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
