"""Each inbound HTTP connection, kept on a short leash: aiohttp's protocol with a read
deadline, an open-connection count, and malformed HTTP answered with one log line.

aiohttp's server waits forever for a request that is slow to arrive (it only closes
connections idle *between* requests, after `keepalive_timeout`), so a client sending one
byte a second, or a body that never ends, held its connection and file descriptor
indefinitely. Here a request must arrive whole within `read_timeout_s`: the clock starts
when a new connection opens, or on a kept-alive one when the next request's first byte
arrives, and covers the headers and the body. `GuardedHandler` enforces it up to the
headers; the edge reads the body against the same deadline (`body_deadline`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from gateway.logs import LogLimiter, describe, one_line

log = logging.getLogger(__name__)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, plus the read deadline and quiet error logs."""

    __slots__ = ("_guard", "_in_request", "_read_deadline", "_read_timer", "_spoke")

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_deadline = 0.0
        self._in_request = False
        self._spoke = False  # bytes arrived while a request was being handled

    # --- the read deadline -----------------------------------------------------------

    def _arm(self) -> None:
        self._read_deadline = self._loop.time() + self._guard.read_timeout
        self._read_timer = self._loop.call_at(self._read_deadline, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self._in_request:  # (a request being handled has the edge's own deadline)
            self._guard.limiter.log(
                "connections closed: no complete request within read_timeout_s",
                logging.INFO,
                "closed a connection from %s: no complete request within %g s",
                _address(self.peername),
                self._guard.read_timeout,
            )
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # a new connection owes its first request within the deadline

    def data_received(self, data: bytes) -> None:
        if self._in_request:
            self._spoke = True
        elif self._read_timer is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> float:
        """The request's headers are in: the header clock stops, and the deadline by which
        its body must be in is returned (loop time)."""
        deadline = self._read_deadline if self._read_timer is not None else 0.0
        self._disarm()
        self._in_request = True
        self._spoke = False
        self._read_deadline = deadline or self._loop.time() + self._guard.read_timeout
        return self._read_deadline

    def request_finished(self) -> None:
        self._in_request = False
        if self._spoke and self.transport is not None:
            # Bytes came in while the request was handled (body bytes, or the start of a
            # pipelined request): time the next request from now rather than not at all.
            self._arm()

    @property
    def body_deadline(self) -> float:
        return self._read_deadline

    # --- malformed HTTP and connection errors: one line each, never a traceback ----------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp calls this for a request it could not parse (400, 413, 431...), and for
        an exception out of the handler, which the edge never lets happen. aiohttp's own
        version logs a traceback for each; a port on the internet gets garbage all day."""
        reason = describe(exc) if exc is not None else one_line(message or "")
        self._guard.limiter.log(
            f"malformed requests ({status})",
            logging.INFO,
            "malformed request from %s (%d): %s",
            request.remote,
            status,
            reason,
        )
        if request.writer.output_size > 0:
            # Part of a response went out already: all that is left is to drop the line.
            raise ConnectionError("response already started")
        error = "bad request" if status < 500 else "temporarily unavailable"
        response = web.json_response({"error": error}, status=status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's other error logs: one line, without the traceback. A body that fails to
        decode while aiohttp drains what the edge left unread (after a 404, say) is the
        client's doing and was answered already: debug only."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, RequestPayloadError):
            log.debug("unread body of a request already answered: %s", describe(exc))
            return
        what = str(args[0] % args[1:] if len(args) > 1 else args[0] if args else "error")
        if isinstance(exc, BaseException):
            what = f"{what}: {describe(exc)}"
        self._guard.limiter.log(
            "HTTP connection errors", logging.WARNING, "HTTP connection: %s", one_line(what)
        )


class GuardedServer(web.Server):
    """aiohttp's low-level server making `GuardedHandler`s, and counting them, so that the
    listener (`gateway.listener`) can stop accepting at `max_connections`."""

    def __init__(
        self,
        handler: Handler,
        *,
        read_timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(self._handle, **kwargs)
        self._handler = handler
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.open_connections = 0
        self.limiter = LogLimiter(log)
        self._room = asyncio.Event()
        self._room.set()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = cast(GuardedHandler, request.protocol)  # made by __call__ below
        protocol.request_started()
        try:
            return await self._handler(request)
        finally:
            protocol.request_finished()

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.open_connections += 1
        if self.open_connections >= self.max_connections:
            self._room.clear()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.open_connections -= 1
        if self.open_connections < self.max_connections:
            self._room.set()

    async def room(self) -> None:
        """Return once fewer than `max_connections` connections are open."""
        while self.open_connections >= self.max_connections:
            self._room.clear()
            await self._room.wait()


def body_deadline(request: web.BaseRequest) -> float | None:
    """The loop time by which `request`'s body must be in (None: served without a guard)."""
    protocol = request.protocol
    return protocol.body_deadline if isinstance(protocol, GuardedHandler) else None


def _address(peer: object) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
