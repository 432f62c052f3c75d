"""Faults between the gateway and Redis, for the durability tests: a redis-server of a test's
own (to freeze with SIGSTOP, kill and restart), and a TCP proxy in front of it that loses a
reply or cuts every connection.

A test that needs such a server starts its own, on a free port, so it never disturbs the
session's shared redis-server (tests/conftest.py). (tests/integration/topology.py has the one
the deployment tests run, as docker-compose.yml does; this one can also go without AOF, and
be frozen and killed.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import socket
from pathlib import Path

from gateway.store import redis_inbox
from tests.integration.topology import require


def accept_call() -> bytes:
    """The gateway's accept call as it goes over the wire: `EVALSHA <sha1 of the script>`
    in RESP (`SCRIPT EXISTS <sha1>`, which redis-py sends first, does not match)."""
    sha = hashlib.sha1(redis_inbox._ACCEPT.encode()).hexdigest()
    return f"EVALSHA\r\n${len(sha)}\r\n{sha}\r\n".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on loopback. `aof=True` persists every write before it
    answers (`appendonly yes`, `appendfsync always`), as docker-compose.yml runs it."""

    def __init__(self, workdir: Path, *, aof: bool = False) -> None:
        self._binary = require(shutil.which("redis-server"), "redis-server")
        self.dir = workdir
        self.aof = aof
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        self.proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *persistence,
            "--dir",
            str(self.dir),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def freeze(self) -> None:
        """SIGSTOP: the server accepts connections (the kernel does) and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (only what the AOF holds survives)."""
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class FaultProxy:
    """A TCP proxy in front of Redis that can lose the reply to one call, or cut everything.

    `lose_reply_to(marker, times)`: the next `times` requests containing `marker` reach Redis
    (which runs them), but their reply never comes back: the proxy drops it and closes the
    client's connection, as a network failure after the server acted would."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._marker = b""
        self._lose = 0
        self.lost = 0  # replies lost so far
        self._down = False
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def lose_reply_to(self, marker: bytes, times: int = 1) -> None:
        self._marker, self._lose = marker, times

    def cut(self) -> None:
        """Close every connection now (a network drop)."""
        for client, server in list(self._links):
            client.transport.abort()
            server.transport.abort()
        self._links.clear()

    def go_down(self) -> None:
        """Cut every connection and refuse new ones until `come_back()`."""
        self._down = True
        self.cut()

    def come_back(self) -> None:
        self._down = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        doomed = asyncio.Event()  # the next reply on this connection is to be lost
        for coro in (
            self._requests(reader, up_writer, doomed),
            self._replies(up_reader, writer, doomed, link),
        ):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _requests(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, doomed: asyncio.Event
    ) -> None:
        tail = b""  # a marker may straddle two reads
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                seen = tail + data
                if self._lose and self._marker and self._marker in seen:
                    self._lose -= 1
                    doomed.set()
                tail = seen[-len(self._marker) :] if self._marker else b""
                upstream.write(data)
                await upstream.drain()
        upstream.close()

    async def _replies(
        self,
        upstream: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        doomed: asyncio.Event,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await upstream.read(65536):
                if doomed.is_set():
                    self.lost += 1
                    break
                writer.write(data)
                await writer.drain()
        self._links.discard(link)
        writer.transport.abort()
        link[1].transport.abort()
