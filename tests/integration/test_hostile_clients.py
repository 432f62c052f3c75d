"""A real `dify-gateway serve` under an open-file limit of 300, against 288 slow clients:
it caps its connections under the limit, closes the slow ones at the read timeout, keeps
serving, and its log stays a handful of lines (it was 112,639 errors in 10 s)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.integration.processes import ROOT, free_port

FILE_LIMIT = 300
SLOW_CLIENTS = 288
READ_TIMEOUT_S = 2.0


def limit_files() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@contextlib.asynccontextmanager
async def limited_gateway(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "read_timeout_s": READ_TIMEOUT_S},
        "store": f"sqlite:///{tmp_path / 'gw.db'}",
        "dify": {"apps": {"main": {"base_url": "http://127.0.0.1:9/v1", "api_key": "k-1"}}},
        "bots": {
            "s": {
                "platform": "slack",
                "app": "main",
                "bot_token": "xoxb-1",
                "signing_secret": "secret-1",
                "api_base": "http://127.0.0.1:9",
            }
        },
    }
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(config))
    log_path = tmp_path / "gw.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(tmp_path / "gw.yaml"),
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=limit_files,
        )
    try:
        deadline = time.monotonic() + 20
        while await healthz(port, within=1.0) != 200:
            assert proc.returncode is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.1)
        yield port, log_path
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def healthz(port: int, within: float) -> int | None:
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
                status = await reader.readline()
            finally:
                writer.close()
        return int(status.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        return None


async def slow_client(port: int, stop: asyncio.Event) -> None:
    """A slowloris: the start of a request, then one more byte a second, forever."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /webhooks/s HTTP/1.1\r\nHost: gw\r\n")
            while not stop.is_set():
                await asyncio.sleep(1.0)
                writer.write(b"X")
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.mark.skipif(sys.platform != "linux", reason="file limits and backlog as on Linux")
async def test_slow_clients_at_the_file_limit_neither_block_nor_flood(tmp_path: Path) -> None:
    async with limited_gateway(tmp_path) as (port, log_path):
        stop = asyncio.Event()
        clients = [asyncio.create_task(slow_client(port, stop)) for _ in range(SLOW_CLIENTS)]
        try:
            await asyncio.sleep(0.5)
            # A new client waits behind the slow ones at most about one read timeout each
            # wave of them takes (the cap is half the limit: two waves).
            asked = time.monotonic()
            assert await healthz(port, within=4 * READ_TIMEOUT_S + 2) == 200
            waited = time.monotonic() - asked
            await asyncio.sleep(2 * READ_TIMEOUT_S)
            assert await healthz(port, within=4 * READ_TIMEOUT_S + 2) == 200
        finally:
            stop.set()
            await asyncio.gather(*clients)
        log = log_path.read_text()
    assert waited < 3 * READ_TIMEOUT_S + 1
    assert "Traceback" not in log
    assert "out of system resource" not in log and "Too many open files" not in log
    assert "leaves room for 150 inbound connections" in log
    lines = log.splitlines()
    assert len(lines) < 40, log[-3000:]
