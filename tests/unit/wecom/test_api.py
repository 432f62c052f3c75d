"""The WeCom app API client against the fake qyapi server: token caching and refresh,
errcode mapping, media download, and no token in any error or log line."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.wecom.api import WecomAPI
from gateway.platform import PlatformError, RateLimited
from gateway.store.memory import MemoryStore
from tests.fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeQyapi


@pytest.fixture
async def qyapi() -> AsyncIterator[FakeQyapi]:
    fake = FakeQyapi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def _api(
    qyapi: FakeQyapi,
    http: httpx.AsyncClient,
    store: MemoryStore | None = None,
    secret: str = SECRET,
) -> WecomAPI:
    return WecomAPI(
        http,
        store or MemoryStore(),
        api_base=qyapi.base_url,
        corp_id=CORP_ID,
        secret=secret,
        agent_id=AGENT_ID,
    )


async def test_send_markdown_with_agentid(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    msgid = await _api(qyapi, http).send_markdown("zhangsan", "**hello**")
    (call,) = qyapi.of("message/send")
    assert call.payload == {
        "touser": "zhangsan",
        "msgtype": "markdown",
        "agentid": AGENT_ID,
        "markdown": {"content": "**hello**"},
    }
    assert msgid == qyapi.sent[0].msgid


async def test_token_is_cached(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    api = _api(qyapi, http)
    for _ in range(3):
        await api.send_markdown("zhangsan", "hi")
    assert len(qyapi.of("gettoken")) == 1
    assert qyapi.of("gettoken")[0].params == {"corpid": CORP_ID, "corpsecret": SECRET}


async def test_token_is_shared_through_the_store(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    store = MemoryStore()
    await _api(qyapi, http, store).send_markdown("zhangsan", "one instance")
    await _api(qyapi, http, store).send_markdown("zhangsan", "another instance")
    assert len(qyapi.of("gettoken")) == 1


async def test_token_lives_for_the_returned_expires_in(
    qyapi: FakeQyapi, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    qyapi.expires_in = 600  # SharedToken refreshes 300 s before expiry
    api = _api(qyapi, http)
    await api.send_markdown("zhangsan", "one")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 250)
    await api.send_markdown("zhangsan", "still fresh")
    assert len(qyapi.of("gettoken")) == 1
    monkeypatch.setattr(time, "time", lambda: now + 310)
    await api.send_markdown("zhangsan", "refreshed")
    assert len(qyapi.of("gettoken")) == 2


@pytest.mark.parametrize("errcode", [42001, 40014])
async def test_expired_token_is_refreshed_once(
    qyapi: FakeQyapi, http: httpx.AsyncClient, errcode: int
) -> None:
    api = _api(qyapi, http)
    await api.send_markdown("zhangsan", "first")
    if errcode == 42001:
        qyapi.expire_tokens()
    else:
        qyapi.fail_next("message/send", 40014)
    await api.send_markdown("zhangsan", "second")
    assert len(qyapi.of("gettoken")) == 2
    assert qyapi.texts() == ["first", "second"]
    tokens = [c.params["access_token"] for c in qyapi.of("message/send")]
    assert tokens[1] == tokens[0] and tokens[2] != tokens[0]


async def test_token_refresh_is_tried_only_once(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.fail_next("message/send", 42001, times=2)
    with pytest.raises(PlatformError) as caught:
        await _api(qyapi, http).send_markdown("zhangsan", "hi")
    assert caught.value.code == "42001"
    assert len(qyapi.of("message/send")) == 2 and len(qyapi.of("gettoken")) == 2


async def test_wrong_secret_is_a_platform_error(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    with pytest.raises(PlatformError) as caught:
        await _api(qyapi, http, secret="bad-secret-value").send_markdown("zhangsan", "hi")
    assert caught.value.code == "40001"
    assert "bad-secret-value" not in str(caught.value)
    assert len(qyapi.of("gettoken")) == 1  # no retry loop on a bad secret


@pytest.mark.parametrize(("errcode", "retry_after"), [(45009, 60.0), (45033, 1.0)])
async def test_frequency_limits_are_rate_limited(
    qyapi: FakeQyapi, http: httpx.AsyncClient, errcode: int, retry_after: float
) -> None:
    qyapi.fail_next("message/send", errcode)
    with pytest.raises(RateLimited) as caught:
        await _api(qyapi, http).send_markdown("zhangsan", "hi")
    assert caught.value.retry_after == retry_after and caught.value.code == str(errcode)


@pytest.mark.parametrize(("errcode", "hint"), [(60020, "trusted IP"), (81013, "visible range")])
async def test_errors_carry_a_hint(
    qyapi: FakeQyapi, http: httpx.AsyncClient, errcode: int, hint: str
) -> None:
    qyapi.fail_next("message/send", errcode)
    with pytest.raises(PlatformError, match=hint) as caught:
        await _api(qyapi, http).send_markdown("zhangsan", "hi")
    assert not isinstance(caught.value, RateLimited)


async def test_busy_is_a_plain_platform_error(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.fail_next("message/send", -1, "system busy")
    with pytest.raises(PlatformError) as caught:
        await _api(qyapi, http).send_markdown("zhangsan", "hi")
    assert caught.value.code == "-1"


async def test_download_media(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.media["m1"] = (b"\x89PNG fake", "image/png", "photo.png")
    data, content_type, name = await _api(qyapi, http).download_media("m1")
    assert (data, content_type, name) == (b"\x89PNG fake", "image/png", "photo.png")


async def test_download_unknown_media(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    with pytest.raises(PlatformError) as caught:
        await _api(qyapi, http).download_media("nope")
    assert caught.value.code == "40007"


async def test_download_refreshes_an_expired_token(
    qyapi: FakeQyapi, http: httpx.AsyncClient
) -> None:
    qyapi.media["m1"] = (b"AMR", "audio/amr", "v.amr")
    api = _api(qyapi, http)
    await api.token.get()
    qyapi.expire_tokens()
    data, _, _ = await api.download_media("m1")
    assert data == b"AMR" and len(qyapi.of("gettoken")) == 2


async def test_user_name(qyapi: FakeQyapi, http: httpx.AsyncClient) -> None:
    qyapi.names["zhangsan"] = "张三"
    assert await _api(qyapi, http).user_name("zhangsan") == "张三"


async def test_network_errors_never_show_the_url(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    api = WecomAPI(
        http,
        MemoryStore(),
        api_base="http://127.0.0.1:9",  # discard port: connection refused
        corp_id=CORP_ID,
        secret=SECRET,
        agent_id=AGENT_ID,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PlatformError) as caught:
        await api.send_markdown("zhangsan", "hi")
    assert caught.value.code == "network"
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    assert SECRET not in str(caught.value) and "127.0.0.1" not in str(caught.value)


async def test_http_errors(http: httpx.AsyncClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("gettoken"):
            return httpx.Response(200, json={"errcode": 0, "access_token": "t", "expires_in": 7200})
        return httpx.Response(429 if "send" in request.url.path else 502)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = WecomAPI(
            client,
            MemoryStore(),
            api_base="https://qyapi.example",
            corp_id=CORP_ID,
            secret=SECRET,
            agent_id=AGENT_ID,
        )
        with pytest.raises(RateLimited):
            await api.send_markdown("zhangsan", "hi")
        with pytest.raises(PlatformError) as caught:
            await api.recall("msgid-1")
        assert caught.value.code == "http_502"


async def test_invalid_json_and_missing_token(http: httpx.AsyncClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("gettoken"):
            return httpx.Response(200, json={"errcode": 0})
        return httpx.Response(200, text="<html>proxy error</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = WecomAPI(
            client,
            MemoryStore(),
            api_base="https://qyapi.example",
            corp_id=CORP_ID,
            secret=SECRET,
            agent_id=AGENT_ID,
        )
        with pytest.raises(PlatformError, match="no access_token"):
            await api.send_markdown("zhangsan", "hi")


async def test_invaliduser_in_an_ok_answer_is_an_error(http: httpx.AsyncClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("gettoken"):
            return httpx.Response(200, json={"errcode": 0, "access_token": "t", "expires_in": 7200})
        return httpx.Response(200, json={"errcode": 0, "invaliduser": "zhangsan", "msgid": "1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = WecomAPI(
            client,
            MemoryStore(),
            api_base="https://qyapi.example",
            corp_id=CORP_ID,
            secret=SECRET,
            agent_id=AGENT_ID,
        )
        with pytest.raises(PlatformError) as caught:
            await api.send_markdown("zhangsan", "hi")
        assert caught.value.code == "invaliduser"
