"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import limits
from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.feishu import FakeFeishu
from tests.fakes.slack import FakeSlack
from tests.fakes.wecom_bot import FakeWecomBotServer
from tests.integration.browser import chromium


@pytest.fixture
def one_rate_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limits count per calendar minute (tests/unit/test_limits.py checks the windows
    with a clock of its own). A test that began late in a minute would see its later
    questions counted in the next one, so tests that use this run inside one long window."""
    monkeypatch.setattr(limits, "WINDOW_S", 1_000_000)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (skipped when not installed, outside CI)."""
    with chromium(tmp_path) as driver:
        yield driver


@pytest.fixture
async def ding() -> AsyncIterator[FakeDingtalk]:
    """The fake DingTalk open platform (Stream gateway and robot API) on loopback."""
    fake = FakeDingtalk()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    """The fake Feishu/Lark open platform on loopback."""
    fake = FakeFeishu()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWecomBotServer]:
    """The fake WeCom AI bot (its callback sender, response_url and WebSocket) on loopback."""
    fake = FakeWecomBotServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack Web API on loopback (a module may define its own `slack`)."""
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()
