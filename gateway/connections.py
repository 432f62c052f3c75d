"""Each inbound HTTP connection, kept on a short leash: aiohttp's protocol with a read
deadline, an open-connection count, and malformed HTTP answered with one log line.

aiohttp's server waits forever for a request that is slow to arrive (it only closes
connections idle *between* requests, after `keepalive_timeout`), so a client sending one
byte a second, or a body that never ends, held its connection and file descriptor
indefinitely. Here a request must arrive whole within `read_timeout_s`: the clock starts
when a new connection opens, or on a kept-alive one when the next request's first byte
arrives, and covers the headers and the body. `GuardedHandler` enforces it up to the
headers, checked by one sweep per server (every second, or every quarter of a shorter
timeout) rather than a timer per request; the edge reads the body against the same
deadline (`body_deadline`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from gateway.logs import LogLimiter, describe, one_line

log = logging.getLogger(__name__)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, plus the read deadline and quiet error logs."""

    __slots__ = (
        "_arriving_since",
        "_body",
        "_guard",
        "_in_request",
        "_read_deadline",
        "_spoke",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        # Loop time since when a request is arriving (0.0: none is). Checked by the
        # server's sweep rather than by a timer per request: arming and cancelling a timer
        # for every request cost about a tenth of a bare request's time.
        self._arriving_since = 0.0
        self._read_deadline = 0.0
        self._in_request = False
        self._body: StreamReader | None = None  # the body of the request being handled
        self._spoke = False  # bytes of a next request arrived while one was being handled

    # --- the read deadline -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arriving_since = self._loop.time()  # a new connection owes a request

    def data_received(self, data: bytes) -> None:
        # (aiohttp also calls this with no bytes, to parse what it has buffered: no news.)
        if not data:
            pass
        elif self._in_request:
            # Once the body is whole, what comes is the next request (pipelined). Bytes of
            # the body itself are not: after the answer the connection idles until the
            # keep-alive timeout, which a load balancer's kept connection relies on.
            if self._body is None or self._body.is_eof():
                self._spoke = True
        elif not self._arriving_since:
            self._arriving_since = self._loop.time()  # the next request's first byte
        super().data_received(data)

    def overdue(self, cutoff: float) -> bool:
        """A request has been arriving since before `cutoff` (loop time), headers unread."""
        return not self._in_request and 0.0 < self._arriving_since <= cutoff

    def read_timed_out(self) -> None:
        self._guard.limiter.log(
            "connections closed: no complete request within read_timeout_s",
            logging.INFO,
            "closed a connection from %s: no complete request within %g s",
            _address(self.peername),
            self._guard.read_timeout,
        )
        self.force_close()

    def request_started(self, body: StreamReader) -> None:
        """The request's headers are in: the body must be in by `body_deadline`."""
        since = self._arriving_since or self._loop.time()
        self._read_deadline = since + self._guard.read_timeout
        self._arriving_since = 0.0
        self._in_request = True
        self._body = body
        self._spoke = False

    def request_finished(self) -> None:
        self._in_request = False
        self._body = None
        if self._spoke:
            # The start of a next request came in while this one was handled: time it
            # from now rather than not at all.
            self._arriving_since = self._loop.time()

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
        self._handlers: set[GuardedHandler] = set()
        # Deadlines are enforced up to this late: a quarter of the timeout, at most a second.
        self._sweep_every = min(1.0, read_timeout / 4)
        # The sweep runs while connections are open and the server is not shut down, so an
        # idle or stopped server holds no timer that would keep its loop busy.
        self._sweep: asyncio.TimerHandle | None = None
        self._shut_down = False

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = cast(GuardedHandler, request.protocol)  # made by __call__ below
        protocol.request_started(request.content)
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
        if isinstance(handler, GuardedHandler):
            self._handlers.add(handler)
            if self._sweep is None and not self._shut_down:
                self._sweep = self._loop.call_later(self._sweep_every, self._close_overdue)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.open_connections -= 1
        if self.open_connections < self.max_connections:
            self._room.set()
        if isinstance(handler, GuardedHandler):
            self._handlers.discard(handler)

    def _close_overdue(self) -> None:
        """Close the connections whose request has not arrived within the read timeout;
        runs every `_sweep_every` seconds while connections are open."""
        cutoff = self._loop.time() - self.read_timeout
        for handler in [h for h in self._handlers if h.overdue(cutoff)]:
            handler.read_timed_out()
        self._sweep = None
        if self._handlers and not self._shut_down:
            self._sweep = self._loop.call_later(self._sweep_every, self._close_overdue)

    @property
    def sweeping(self) -> bool:
        """Whether the read-deadline sweep is scheduled."""
        return self._sweep is not None

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        """aiohttp's shutdown (each connection finishes or is closed within `timeout`), the
        sweep still closing slow requests meanwhile; then the sweep stops for good."""
        try:
            await super().shutdown(timeout)
        finally:
            self._shut_down = True
            if self._sweep is not None:
                self._sweep.cancel()
                self._sweep = None

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
