"""The routes adapters serve themselves (`ServesRoutes` in gateway/platform.py): pages, and
WebSockets that the edge upgrades once the adapter has accepted the request.

Part of the HTTP edge: with http.py and app.py, the only code that knows aiohttp's server
side. The adapter sees a `WebhookRequest` and answers an `HttpResponse` or an `Upgrade`; so
a refused token is a plain 401 before any upgrade, and the adapter then talks to a
`ServedSocket`, never to aiohttp.

Sockets are tracked, because aiohttp's shutdown waits for every handler to return and a
socket's handler returns only when the socket closes: `OpenSockets.close_all()` (called by
`EdgeServer` as the server shuts down) closes them with 1001, "going away".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from gateway.models import HttpResponse, WebhookRequest
from gateway.platform import RouteHandler, SocketClosed, Upgrade, WebhookRejected
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

Endpoint = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

CLOSE_WAIT_S = 2.0  # for the peer's answer to our close frame, then the connection is cut
HEARTBEAT_S = 30.0  # pings find peers that vanished without a close (phones, proxies)
GOING_AWAY = 1001
INTERNAL_ERROR = 1011


def _respond(response: HttpResponse) -> web.Response:
    headers = {"Content-Type": response.content_type, **response.headers}
    return web.Response(status=response.status, body=response.body, headers=headers)


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class AiohttpSocket:
    """A `ServedSocket` on aiohttp's `WebSocketResponse`."""

    __slots__ = ("_request", "_ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.BaseRequest) -> None:
        self._ws = ws
        self._request = request

    async def send_text(self, text: str) -> None:
        if self._ws.closed:
            raise SocketClosed()
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            raise SocketClosed() from exc

    async def receive(self) -> str | bytes | None:
        message = await self._ws.receive()
        if message.type is WSMsgType.TEXT:
            return str(message.data)
        if message.type is WSMsgType.BINARY:
            return bytes(message.data)
        return None  # CLOSE, CLOSING, CLOSED, ERROR (a message over max_msg_size: 1009)

    async def close(self, code: int = 1000) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._ws.close(code=code)
        except TimeoutError:
            # A peer that does not read cannot take our close frame either: cut it off.
            transport = self._request.transport
            if transport is not None:
                transport.abort()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code


class OpenSockets:
    """Every socket the edge serves, so a shutdown can close them."""

    def __init__(self) -> None:
        self._open: set[AiohttpSocket] = set()

    @contextlib.asynccontextmanager
    async def hold(self, socket: AiohttpSocket) -> AsyncIterator[None]:
        self._open.add(socket)
        try:
            yield
        finally:
            self._open.discard(socket)

    def __len__(self) -> int:
        return len(self._open)

    async def close_all(self, code: int = GOING_AWAY) -> None:
        await asyncio.gather(*(s.close(code) for s in list(self._open)))


class AdapterRoute:
    """One route of a bot's adapter, e.g. `/chat/<bot>` or `/chat/<bot>/ws`."""

    __slots__ = ("_gateway", "_handler", "_max_frame", "_name", "_sockets")

    def __init__(
        self, name: str, handler: RouteHandler, gateway: Gateway, sockets: OpenSockets
    ) -> None:
        self._name = name
        self._handler = handler
        self._gateway = gateway
        self._sockets = sockets
        self._max_frame = gateway.config.server.max_body_bytes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        name = self._name
        req = WebhookRequest(
            request.method, request.path, request.query, request.headers, b"", time.time()
        )
        try:
            result = await self._handler(req)
        except WebhookRejected as exc:
            log.info("bot %s: refused %s (%d): %s", name, request.path, exc.status, exc)
            return _refuse(exc.status, "rejected")
        except StoreUnavailable as exc:
            log.error("bot %s: store unavailable on %s: %s", name, request.path, exc)
            return _refuse(503, "temporarily unavailable")
        except Exception:
            log.exception("bot %s: could not answer %s", name, request.path)
            return _refuse(400, "bad request")
        if isinstance(result, HttpResponse):
            return _respond(result)
        return await self._upgrade(request, result)

    async def _upgrade(self, request: web.BaseRequest, upgrade: Upgrade) -> web.StreamResponse:
        if self._gateway.draining:
            return _refuse(503, "shutting down")
        ws = web.WebSocketResponse(
            max_msg_size=self._max_frame, heartbeat=HEARTBEAT_S, timeout=CLOSE_WAIT_S
        )
        if not ws.can_prepare(request).ok:
            return _refuse(426, "websocket upgrade required", {"Upgrade": "websocket"})
        await ws.prepare(request)
        socket = AiohttpSocket(ws, request)
        code = 1000
        async with self._sockets.hold(socket):
            try:
                await upgrade.run(socket)
            except Exception:
                log.exception("bot %s: socket session failed", self._name)
                code = INTERNAL_ERROR
            finally:
                await socket.close(code)
        return ws


class EdgeServer(web.Server):
    """aiohttp's low-level server, closing the edge's sockets before it waits for its
    handlers to finish: a socket's handler never finishes by itself."""

    def __init__(self, handler: Endpoint, sockets: OpenSockets, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sockets = sockets

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp)
        await self._sockets.close_all()
        await super().shutdown(timeout)
