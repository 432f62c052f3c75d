"""The OpenAPI client against the fake server: tokens, errors, rate limits, downloads."""

from __future__ import annotations

import json

import httpx
import pytest

from adapters.feishu.api import FeishuAPI
from gateway.platform import PlatformError, RateLimited
from gateway.store.memory import MemoryStore
from tests.fakes.feishu import FakeFeishu
from tests.unit.feishu.conftest import bot_config


async def test_token_is_fetched_once_and_sent_as_bearer(api: FeishuAPI, fake: FakeFeishu) -> None:
    assert await api.bot_open_id() == "ou_bot"
    assert await api.bot_open_id() == "ou_bot"
    assert fake.tokens_issued == 1
    (token_call,) = fake.calls_to("POST", "tenant_access_token")
    assert token_call.body == {"app_id": "cli_test", "app_secret": "app-secret"}


async def test_token_is_shared_through_the_store(fake: FakeFeishu) -> None:
    store = MemoryStore()
    async with httpx.AsyncClient() as http:
        first, second = (FeishuAPI(http, store, bot_config(fake)) for _ in range(2))
        await first.bot_open_id()
        await second.bot_open_id()
    assert fake.tokens_issued == 1


@pytest.mark.parametrize("code", [99991663, 99991661])
async def test_rejected_token_is_refetched_and_the_call_retried_once(
    api: FeishuAPI, fake: FakeFeishu, code: int
) -> None:
    await api.bot_open_id()
    fake.inject("GET", "bot/v3/info", code=code)
    assert await api.bot_open_id() == "ou_bot"
    assert fake.tokens_issued == 2


async def test_expired_token_everywhere_is_refetched(api: FeishuAPI, fake: FakeFeishu) -> None:
    await api.bot_open_id()
    fake.expire_tokens()
    assert await api.bot_open_id() == "ou_bot"


async def test_a_token_rejected_twice_is_an_error(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject("GET", "bot/v3/info", code=99991663, times=2)
    with pytest.raises(PlatformError) as info:
        await api.bot_open_id()
    assert info.value.code == "99991663"


async def test_http_429_with_reset_header_is_rate_limited(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject(
        "GET", "bot/v3/info", code=99991400, status=429, headers={"x-ogw-ratelimit-reset": "7"}
    )
    with pytest.raises(RateLimited) as info:
        await api.bot_open_id()
    assert info.value.retry_after == 7.0


async def test_old_style_400_frequency_limit_is_rate_limited(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    fake.inject("GET", "bot/v3/info", code=99991400, status=400)
    with pytest.raises(RateLimited) as info:
        await api.bot_open_id()
    assert info.value.retry_after == 1.0


async def test_message_rate_limit_230020_is_rate_limited(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject("POST", "/reply", code=230020, headers={"x-ogw-ratelimit-reset": "bogus"})
    with pytest.raises(RateLimited):
        await api.reply("om_1", "interactive", {}, in_thread=False, uuid="u")


async def test_other_codes_are_platform_errors(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject("POST", "/reply", code=230002)
    with pytest.raises(PlatformError) as info:
        await api.reply("om_1", "interactive", {}, in_thread=False, uuid="u")
    assert info.value.code == "230002" and not isinstance(info.value, RateLimited)


async def test_a_non_json_answer_is_an_http_error(fake: FakeFeishu) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway"))
    async with httpx.AsyncClient(transport=transport) as http:
        api = FeishuAPI(http, MemoryStore(), bot_config(fake))
        with pytest.raises(PlatformError) as info:
            await api.bot_open_id()
    assert info.value.code == "http_502"


async def test_network_errors_are_platform_errors(fake: FakeFeishu) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        api = FeishuAPI(http, MemoryStore(), bot_config(fake))
        with pytest.raises(PlatformError) as info:
            await api.bot_open_id()
    assert info.value.code == "network"


async def test_bodies_are_compact_utf8(api: FeishuAPI, fake: FakeFeishu) -> None:
    message_id = await api.reply("om_1", "interactive", {"t": "中文"}, in_thread=True, uuid="u1")
    call = fake.calls_to("POST", "/reply")[0]
    assert call.body["reply_in_thread"] is True
    assert json.loads(call.body["content"]) == {"t": "中文"}
    assert call.size == len(
        json.dumps(call.body, ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert message_id in fake.messages


async def test_download_returns_bytes_and_type(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.add_resource("om_1", "img_1", b"\x89PNG....", "image", "image/png")
    assert await api.download("om_1", "img_1", "image") == (b"\x89PNG....", "image/png")
    assert fake.calls_to("GET", "resources")[0].query == {"type": "image"}


async def test_download_of_a_json_file_is_the_file(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.add_resource("om_1", "file_1", b'{"a": 1}', "file", "application/json")
    assert (await api.download("om_1", "file_1", "file"))[0] == b'{"a": 1}'


async def test_download_errors_are_typed(api: FeishuAPI, fake: FakeFeishu) -> None:
    with pytest.raises(PlatformError) as info:
        await api.download("om_1", "missing", "file")
    assert info.value.code == "234003"
    fake.add_resource("om_1", "f", b"data", "file", "application/octet-stream")
    fake.inject("GET", "resources", code=99991663)
    assert (await api.download("om_1", "f", "file"))[0] == b"data"


async def test_ws_endpoint_uses_app_credentials(api: FeishuAPI, fake: FakeFeishu) -> None:
    data = await api.ws_endpoint()
    assert data["URL"].startswith("ws://127.0.0.1")
    assert data["ClientConfig"]["PingInterval"] == 120
    call = fake.calls_to("POST", "ws/endpoint")[0]
    assert call.body == {"AppID": "cli_test", "AppSecret": "app-secret"}
    assert fake.tokens_issued == 0


async def test_ws_endpoint_error_codes(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.inject("POST", "ws/endpoint", code=1000040343)
    with pytest.raises(PlatformError) as info:
        await api.ws_endpoint()
    assert info.value.code == "1000040343"


async def test_user_name(api: FeishuAPI, fake: FakeFeishu) -> None:
    fake.names["ou_1"] = "Ada"
    assert await api.user_name("ou_1") == "Ada"
    assert fake.calls_to("GET", "contact")[0].query == {"user_id_type": "open_id"}
    with pytest.raises(PlatformError):
        await api.user_name("ou_2")
