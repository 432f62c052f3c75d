"""Hostile connections: slow or endless requests are closed at `read_timeout_s`, idle
kept-alive connections at `keepalive_timeout_s`, at most `max_connections` are open at once,
and running out of file descriptors logs one line, not a flood."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.app import serving
from gateway.config import parse_config
from gateway.emulator import DifyEmulator
from gateway.listener import Listener, connection_cap
from gateway.runtime import Gateway
from tests.conftest import make_config

# A Slack bot whose API is unreachable: nothing here is ever answered.
BOT = {
    "platform": "slack",
    "app": "main",
    "bot_token": "xoxb-1",
    "signing_secret": "secret-1",
    "api_base": "http://127.0.0.1:9",
}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


@asynccontextmanager
async def gateway_on_port(dify: DifyEmulator, **server: Any) -> AsyncIterator[Listener]:
    gateway = Gateway(parse_config(make_config(dify, {"s": BOT}, server=server), env={}))
    async with serving(gateway, "127.0.0.1", 0) as listener:
        yield listener


class Client:
    """A raw HTTP/1.1 client: sends exactly the bytes given, reads until the server closes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.opened = time.monotonic()

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, every: float) -> None:
        """One byte at a time, until the server hangs up."""
        try:
            for i in range(len(data)):
                await self.send(data[i : i + 1])
                await asyncio.sleep(every)
        except ConnectionError:
            pass

    async def until_closed(self, within: float) -> tuple[bytes, float]:
        """Everything the server sent, and the seconds from connecting until it closed (or
        reset the connection: closing on a client still sending does that)."""
        received = b""
        try:
            async with asyncio.timeout(within):
                while chunk := await self.reader.read(65536):
                    received += chunk
        except ConnectionResetError:
            pass
        finally:
            self.close()
        return received, time.monotonic() - self.opened

    def close(self) -> None:
        self.writer.close()


async def test_slow_and_endless_requests_are_closed_at_the_read_timeout(
    dify: DifyEmulator,
) -> None:
    async with gateway_on_port(dify, read_timeout_s=1.0, keepalive_timeout_s=30) as listener:
        port = listener.port
        silent, slowloris, slow_body, partial, endless = [
            await Client.connect(port) for _ in range(5)
        ]
        head = b"POST /webhooks/s HTTP/1.1\r\nHost: gw\r\n"
        feeders = [
            asyncio.create_task(slowloris.trickle(head * 10, every=0.1)),
            asyncio.create_task(
                slow_body.trickle(head + b"Content-Length: 100\r\n\r\n" + b"x" * 100, every=0.01)
            ),
            asyncio.create_task(partial.send(head + b"Content-Length: 100\r\n\r\n{")),
            asyncio.create_task(
                endless.trickle(
                    head + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 500, 0.002
                )
            ),
        ]
        results = await asyncio.gather(
            *(c.until_closed(within=5) for c in (silent, slowloris, slow_body, partial, endless))
        )
        for task in feeders:
            task.cancel()
    for _, after in results:
        assert 0.9 < after < 2.0
    # No request line at all: nothing to answer. A body that did not come in time: 408
    # (which a client still sending may not get to read before the connection resets).
    assert results[0][0] == results[1][0] == b""
    assert results[3][0].startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in results[3][0]
    for received, _ in (results[2], results[4]):
        assert received == b"" or received.startswith(b"HTTP/1.1 408 ")


async def test_a_request_in_time_is_served_and_an_idle_connection_closes_at_keepalive(
    dify: DifyEmulator,
) -> None:
    async with gateway_on_port(dify, read_timeout_s=0.5, keepalive_timeout_s=1.5) as listener:
        client = await Client.connect(listener.port)
        # Slower than the read timeout in total, but each request arrives in time: the
        # deadline is per request, and idling between requests is the keep-alive's business.
        for _ in range(3):
            await client.send(HEALTHZ[:10])
            await asyncio.sleep(0.1)
            await client.send(HEALTHZ[10:])
            status = await client.reader.readline()
            assert status == b"HTTP/1.1 200 OK\r\n"
            await client.reader.readuntil(b'{"status": "ok"}')
            last_answer = time.monotonic()
            await asyncio.sleep(0.7)  # idle, longer than the read timeout
        received, _ = await client.until_closed(within=5)
    assert received == b""
    assert 1.2 < time.monotonic() - last_answer < 2.2


async def test_a_body_arriving_after_its_headers_leaves_the_connection_to_keepalive(
    dify: DifyEmulator,
) -> None:
    # Bytes of the request's own body are not the start of a next request: a connection
    # that sent its body in a second packet idles until the keep-alive timeout, as a load
    # balancer's kept upstream connection must (closing it earlier races its next request).
    async with gateway_on_port(dify, read_timeout_s=0.5, keepalive_timeout_s=1.5) as listener:
        client = await Client.connect(listener.port)
        await client.send(b"POST /webhooks/s HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n")
        await asyncio.sleep(0.1)
        await client.send(b"{}")
        assert (await client.reader.readline()).startswith(b"HTTP/1.1 401 ")
        await client.reader.readuntil(b"}")
        last_answer = time.monotonic()
        received, _ = await client.until_closed(within=5)
    assert received == b""
    assert 1.2 < time.monotonic() - last_answer < 2.2


async def test_the_read_deadline_sweep_runs_only_while_connections_are_open(
    dify: DifyEmulator,
) -> None:
    # One sweep per server checks every connection's deadline; it must not tick for an idle
    # server, nor survive the server's shutdown and keep the event loop busy.
    async with gateway_on_port(dify, read_timeout_s=0.4) as listener:
        server = listener.server
        assert not server.sweeping  # no connection yet
        client = await Client.connect(listener.port)
        await client.send(HEALTHZ)
        assert await client.reader.readline() == b"HTTP/1.1 200 OK\r\n"
        assert server.sweeping
        client.close()
        for _ in range(40):  # the last connection gone: the next tick (0.1 s) is the last
            if not server.sweeping:
                break
            await asyncio.sleep(0.05)
        assert not server.sweeping
        silent = await Client.connect(listener.port)  # open while the server shuts down
        await asyncio.sleep(0.05)
        assert server.sweeping
    assert not server.sweeping
    assert server.open_connections == 0
    assert await silent.reader.read() == b""  # closed by the shutdown
    silent.close()


async def test_connections_over_the_cap_wait_to_be_accepted(dify: DifyEmulator) -> None:
    async with gateway_on_port(dify, max_connections=3, read_timeout_s=30) as listener:
        holders = [await Client.connect(listener.port) for _ in range(3)]
        waiting = await Client.connect(listener.port)  # the kernel's backlog takes it
        await waiting.send(HEALTHZ)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await waiting.reader.readline()
        holders.pop().close()
        async with asyncio.timeout(2):
            assert await waiting.reader.readline() == b"HTTP/1.1 200 OK\r\n"
        for client in [*holders, waiting]:
            client.close()


def test_the_cap_stays_under_the_open_file_limit() -> None:
    assert connection_cap(4096, 12_000, 20_000) == 4096
    # Too few files for both: inbound connections get what is left, at least half.
    assert connection_cap(4096, 12_000, 14_000) == 4096
    assert connection_cap(4096, 12_000, 6_000) == 3000
    assert connection_cap(4096, 1_000, 4_000) == 3000
    assert connection_cap(4096, 12_000, 300) == 150
    assert connection_cap(100, 12_000, 300) == 100
    assert connection_cap(4096, 10, 2) == 1


async def test_running_out_of_file_descriptors_logs_one_line_and_recovers(
    dify: DifyEmulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real_accept = loop.sock_accept
    until = time.monotonic() + 1.5
    attempts = 0

    async def out_of_files(sock: socket.socket) -> tuple[socket.socket, Any]:
        nonlocal attempts
        if time.monotonic() < until:
            attempts += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(sock)

    monkeypatch.setattr(loop, "sock_accept", out_of_files)
    caplog.set_level(logging.INFO)
    async with gateway_on_port(dify) as listener:
        client = await Client.connect(listener.port)
        await client.send(HEALTHZ)
        async with asyncio.timeout(5):
            assert await client.reader.readline() == b"HTTP/1.1 200 OK\r\n"
        client.close()
    assert time.monotonic() >= until
    assert attempts >= 3  # it kept trying, a few times a second ...
    lines = [r for r in caplog.records if r.name == "gateway.listener"]
    assert len(lines) == 1  # ... and said so once
    assert "EMFILE" in lines[0].getMessage() or "Too many open files" in lines[0].getMessage()
    assert lines[0].exc_info is None
