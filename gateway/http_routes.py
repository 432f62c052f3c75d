"""The routes adapters serve themselves (`ServesRoutes` in gateway/platform.py): pages, and
WebSockets that the edge upgrades once the adapter has accepted the request.

Part of the HTTP edge: with http.py and app.py, the only code that knows aiohttp's server
side. The adapter sees a `WebhookRequest` and answers an `HttpResponse` or an `Upgrade`; so
a refused token is a plain 401 before any upgrade, and the adapter then talks to a
`ServedSocket`, never to aiohttp.

While the gateway shuts down no socket is upgraded (503, as webhooks): the adapter closes
the ones it holds when the shutdown begins (`DrainsClients`), so their clients reconnect
elsewhere, and aiohttp's shutdown, which waits for every handler, is not held up by them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import WSMsgType, web

from gateway.logs import EdgeLog
from gateway.models import HttpResponse, WebhookRequest
from gateway.platform import RouteHandler, SocketClosed, Upgrade, WebhookRejected
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0  # for the peer's answer to our close frame, then the connection is cut
HEARTBEAT_S = 30.0  # pings find peers that vanished without a close (phones, proxies)
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
            return
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled
            # Not us: aiohttp shares one drain waiter between sends, and a send cancelled
            # while waiting on it (a stalled peer) cancels it for the close frame too.
        # A peer that does not read cannot take our close frame either: cut it off.
        transport = self._request.transport
        if transport is not None:
            transport.abort()


class AdapterRoute:
    """One route of a bot's adapter, e.g. `/chat/<bot>` or `/chat/<bot>/ws`."""

    __slots__ = ("_gateway", "_handler", "_log", "_max_frame", "_name")

    def __init__(
        self, name: str, handler: RouteHandler, gateway: Gateway, edge_log: EdgeLog
    ) -> None:
        self._name = name
        self._log = edge_log
        self._handler = handler
        self._gateway = gateway
        self._max_frame = gateway.config.server.max_body_bytes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        name = self._name
        req = WebhookRequest(
            request.method, request.path, request.query, request.headers, b"", time.time()
        )
        try:
            result = await self._handler(req)
        except WebhookRejected as exc:
            self._log.rejected(name, exc.status, f"{request.path}: {exc}", what="request")
            return _refuse(exc.status, "rejected")
        except StoreUnavailable as exc:
            log.error("bot %s: store unavailable on %s: %s", name, request.path, exc)
            return _refuse(503, "temporarily unavailable")
        except Exception as exc:
            self._log.failed(f"bot {name}", 400, f"could not answer {request.path}", exc)
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
        try:
            await upgrade.run(socket)
        except Exception as exc:
            code = INTERNAL_ERROR
            self._log.failed(f"bot {self._name}", code, "socket session failed", exc)
        finally:
            await socket.close(code)
        return ws
