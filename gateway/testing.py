"""aiohttp's test server around the production edge, for tests and benchmarks.

`TestClient(GatewayTestServer(gateway))` serves exactly what `serve()` serves (the same
server, request factory, body limit, timeouts and listener with its connection cap) and
runs the gateway's lifetime with it: started before the first request, closed after the
last.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from yarl import URL

from gateway.app import create_server, listening, running
from gateway.listener import Listener
from gateway.runtime import Gateway


class GatewayTestServer(BaseTestServer):
    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        self.gateway = gateway
        self.listener: Listener | None = None
        self._lifetime = contextlib.AsyncExitStack()
        super().__init__(**kwargs)

    async def _make_runner(self, **kwargs: Any) -> web.ServerRunner:
        # (aiohttp's way to start a test server; start_server below does its own instead)
        return web.ServerRunner(create_server(self.gateway), **kwargs)

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.listener is not None:
            return
        await self._lifetime.enter_async_context(running(self.gateway))
        self.listener = await self._lifetime.enter_async_context(
            listening(self.gateway, self.host, self.port or 0)
        )
        self.port = self.listener.port
        self.scheme = self.scheme or "http"
        self._root = URL(f"{self.scheme}://{self.host}:{self.port}")

    @property
    def started(self) -> bool:
        return self.listener is not None

    async def close(self) -> None:
        if self.listener is not None and not self.closed:
            await self._lifetime.aclose()  # the listener, then the gateway
            self._root = None
            self._closed = True
