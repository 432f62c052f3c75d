from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.feishu.api import FeishuAPI
from gateway.config import FeishuBot
from gateway.store.memory import MemoryStore
from tests.fakes.feishu import FakeFeishu


@pytest.fixture
async def fake() -> AsyncIterator[FakeFeishu]:
    server = FakeFeishu()
    await server.start()
    yield server
    await server.stop()


def bot_config(fake: FakeFeishu, **extra: Any) -> FeishuBot:
    return FeishuBot.model_validate(
        {
            "platform": "feishu",
            "app": "main",
            "api_base": fake.base_url,
            "app_id": fake.app_id,
            "app_secret": fake.app_secret,
            "verification_token": "v-token",
            **extra,
        }
    )


@pytest.fixture
async def api(fake: FakeFeishu) -> AsyncIterator[FeishuAPI]:
    async with httpx.AsyncClient() as http:
        yield FeishuAPI(http, MemoryStore(), bot_config(fake))
