"""aiohttp's test server around the production edge, for tests and benchmarks.

`TestClient(GatewayTestServer(gateway))` serves exactly what `serve()` serves (the same
`web.Server`, request factory and body limit) and runs the gateway's lifetime with it:
started before the first request, closed after the last.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer

from gateway.app import create_server
from gateway.runtime import Gateway


class GatewayTestServer(BaseTestServer):
    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        self.gateway = gateway
        super().__init__(**kwargs)

    async def _make_runner(self, **kwargs: Any) -> web.ServerRunner:
        return web.ServerRunner(create_server(self.gateway), **kwargs)

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner is None:
            await self.gateway.start()
        await super().start_server(loop, **kwargs)

    async def close(self) -> None:
        started = self.runner is not None
        await super().close()
        if started:
            await self.gateway.aclose()
