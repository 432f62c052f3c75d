"""aiohttp's test server around the production edge, for tests and benchmarks.

`TestClient(GatewayTestServer(gateway))` serves exactly what `serve()` serves (the same
`web.Server`, request factory and body limit) and runs the gateway's lifetime with it:
started before the first request, closed after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer

from gateway.app import create_server, running
from gateway.runtime import Gateway


class GatewayTestServer(BaseTestServer):
    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        self.gateway = gateway
        self._lifetime = contextlib.AsyncExitStack()
        super().__init__(**kwargs)

    async def _make_runner(self, **kwargs: Any) -> web.ServerRunner:
        return web.ServerRunner(create_server(self.gateway), **kwargs)

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner is None:
            await self._lifetime.enter_async_context(running(self.gateway))
        await super().start_server(loop, **kwargs)

    async def close(self) -> None:
        await super().close()
        await self._lifetime.aclose()
