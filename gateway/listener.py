"""The listening sockets, with an accept loop of our own: at most `max_connections` open
connections, and running out of file descriptors costs one log line, not a flood.

asyncio's own accept loop (`loop.create_server`) accepts whatever comes, and when `accept()`
fails with EMFILE it logs an error with a traceback for every pending connection and
schedules a retry for each: with the open-file limit reached under a slow-client attack it
logged 112,639 errors in 10 s. Here one task per socket accepts only while there is room;
past the cap new connections wait in the kernel's backlog (and beyond it, clients retry
their SYN), and on EMFILE the loop logs once, waits a moment and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

from gateway.connections import GuardedServer
from gateway.logs import LogLimiter, describe

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_AFTER_S = 0.25  # after accept() ran out of file descriptors or memory


class Listener:
    """Serves `server` on host:port (every address the host resolves to, like asyncio's
    `create_server`); port 0 picks a free port, see `port`."""

    def __init__(self, server: GuardedServer, host: str | None, port: int, *, backlog: int) -> None:
        self._server = server
        self._host = host or None  # "" means every interface, as for asyncio
        self._port = port
        self._backlog = backlog
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        # At most one line per 10 s window (plus its "K more" summary) when accept fails.
        self._limiter = LogLimiter(log, burst=1, window=10.0)

    @property
    def server(self) -> GuardedServer:
        return self._server

    @property
    def port(self) -> int:
        return int(self._sockets[0].getsockname()[1]) if self._sockets else self._port

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._sockets)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # The IPv4 addresses get their own socket (as asyncio does it).
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
                if self._port == 0:
                    # Every address on the one port the first socket was given.
                    self._port = sock.getsockname()[1]
        except OSError:
            self._close_sockets()
            raise
        self._tasks = [asyncio.create_task(self._accept(sock)) for sock in self._sockets]

    async def close(self) -> None:
        """Stop accepting (connections already open are the server's to shut down)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = self._server
        while True:
            await server.room()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                # EMFILE and friends: the connection stays in the backlog; try again soon.
                # Anything else (ECONNABORTED: the client gave up first) concerns one client.
                if exc.errno in OUT_OF_RESOURCES:
                    self._failed("cannot accept connections", exc)
                    await asyncio.sleep(RETRY_AFTER_S)
                continue
            try:
                await loop.connect_accepted_socket(server, conn)
            except Exception as exc:  # this connection is lost, not the listener
                conn.close()
                if not isinstance(exc, ConnectionError):  # (the client already left)
                    self._failed("cannot serve a connection", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._limiter.log(
            what,
            logging.ERROR,
            "%s: %s (%d open); new ones wait",
            what,
            describe(exc),
            self._server.open_connections,
        )


def connection_cap(wanted: int, other_files: int, file_limit: int) -> int:
    """How many inbound connections to allow under an open-file limit of `file_limit`, when
    the rest of the gateway may need `other_files` (outbound sockets, the store, logs).

    `wanted` when both fit; otherwise the inbound side gets what the others leave, but never
    less than half of the limit (answers then wait for outbound sockets rather than every
    new webhook being refused)."""
    if file_limit >= wanted + other_files:
        return wanted
    return max(1, min(wanted, max(file_limit - other_files, file_limit // 2)))
