"""The AI bot POSTs answers and fetches files only on WeCom's hosts or api_base's
(adapters/wecom_bot/hosts.py): an authentic callback naming `169.254.169.254` as its
response_url or media URL gets neither the answer nor a request."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from adapters.wecom_bot.channels import StoreChannel
from adapters.wecom_bot.hosts import redacted, refusal
from adapters.wecom_bot.state import BotState
from gateway.models import Attachment
from gateway.platform import PlatformError
from gateway.store.memory import MemoryStore
from tests.fakes.wecom_bot import make_adapter

DEFAULT_BASE = "wss://openws.work.weixin.qq.com"
TEST_BASE = "ws://127.0.0.1:8123/ws"


@pytest.mark.parametrize(
    "url",
    [
        "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=abc",
        "https://QYAPI.weixin.qq.com/cgi-bin/aibot/response?response_code=abc",
        "https://openws.work.weixin.qq.com/x",
        "http://127.0.0.1:8123/response/code",  # the api_base origin (ws counts as http)
    ],
)
def test_wecom_hosts_and_the_api_base_origin_may_get_answers(url: str) -> None:
    assert refusal(url, TEST_BASE, "response_url") is None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/",
        "http://qyapi.weixin.qq.com/cgi-bin/aibot/response",  # not https
        "https://qyapi.weixin.qq.com:8443/cgi-bin/aibot/response",  # another port
        "https://qyapi.weixin.qq.com.attacker.example/x",
        "https://weixin.qq.com@attacker.example/x",
        "https://user:pw@qyapi.weixin.qq.com/x",
        "https://attacker.example/x\\@qyapi.weixin.qq.com",
        "https://ww-aibot-img-1.cos.ap-guangzhou.myqcloud.com/x",  # media only
        "http://127.0.0.1:8124/response/code",  # next to api_base, not on it
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    assert refusal(url, TEST_BASE, "response_url") is not None


def test_media_may_also_come_from_wecoms_object_storage() -> None:
    bucket = "https://ww-aibot-img-1258476243.cos.ap-guangzhou.myqcloud.com/a/b?sign=x"
    assert refusal(bucket, DEFAULT_BASE, "media") is None
    assert refusal("https://wework.qpic.cn/wwpic/1/0", DEFAULT_BASE, "media") is None
    assert refusal("https://attacker.cos.ap-guangzhou.myqcloud.com/a", DEFAULT_BASE, "media")
    assert refusal("http://169.254.169.254/x", DEFAULT_BASE, "media")


def test_a_refused_url_is_logged_without_its_query() -> None:
    url = "https://user:pw@evil.example:8443/cgi-bin/x?response_code=SECRET#frag"
    assert redacted(url) == "https://evil.example:8443/cgi-bin/x"
    assert redacted("http://[::1") == "<not a URL>"


async def test_a_refused_response_url_gets_no_request_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"errcode": 0})

    evil = "http://169.254.169.254/latest/meta-data/?response_code=SECRET"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        channel = StoreChannel(
            BotState(MemoryStore(), "b"),
            http,
            stream_id="s",
            close_at=time.time() + 60,
            response_url=evil,
            api_base=DEFAULT_BASE,
            bot="b",
        )
        assert not channel.can_overflow
        with caplog.at_level(logging.WARNING):
            await channel.overflow("the rest of the answer")
    assert requests == []
    (record,) = [r for r in caplog.records if "response_url" in r.getMessage()]
    assert "169.254.169.254" in record.getMessage() and "SECRET" not in record.getMessage()


async def test_a_media_url_off_wecoms_hosts_is_not_fetched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = make_adapter()
    try:
        image = Attachment(
            kind="image",
            name="x.png",
            source={"url": "http://169.254.169.254/latest/meta-data/?sign=SECRET"},
        )
        with pytest.raises(PlatformError, match="media_url_refused"):
            await kit.adapter.download(image)
    finally:
        await kit.http.aclose()
    assert "169.254.169.254" in caplog.text and "SECRET" not in caplog.text
