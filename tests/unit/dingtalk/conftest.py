"""Fixtures for the DingTalk unit tests: the loopback fake and an API client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.dingtalk.api import DingtalkApi
from gateway.store.memory import MemoryStore
from tests.fakes.dingtalk import CLIENT_ID, CLIENT_SECRET, FakeDingtalk


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingtalk]:
    server = FakeDingtalk()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(fake: FakeDingtalk) -> AsyncIterator[DingtalkApi]:
    async with httpx.AsyncClient() as http:
        yield DingtalkApi(
            http,
            MemoryStore(),
            api_base=fake.base_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            robot_code=CLIENT_ID,
        )
