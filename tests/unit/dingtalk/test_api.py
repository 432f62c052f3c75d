"""The DingTalk API client against httpx.MockTransport: tokens, errors, throttling."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from adapters.dingtalk.api import DingtalkApi, check_webhook
from gateway.platform import PlatformError, RateLimited
from gateway.store.memory import MemoryStore

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/v1.0/oauth2/accessToken"):
            body = json.loads(request.content)
            assert body == {"appKey": "dingid", "appSecret": "s3cret"}
            n = sum(r.url.path.endswith("/accessToken") for r in self.requests)
            return httpx.Response(200, json={"accessToken": f"tok{n}", "expireIn": 7200})
        return self.handler(request)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def make_api(handler: Handler, store: MemoryStore | None = None) -> tuple[DingtalkApi, Recorder]:
    recorder = Recorder(handler)
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    api = DingtalkApi(
        http,
        store or MemoryStore(),
        api_base="https://api.example.test/prefix/",
        client_id="dingid",
        client_secret="s3cret",
        robot_code="robot1",
    )
    return api, recorder


async def test_token_is_fetched_once_and_sent_as_header() -> None:
    api, rec = make_api(lambda r: httpx.Response(200, json={"processQueryKey": "k"}))
    await api.send_to_user("u1", "sampleText", {"content": "hi"})
    await api.send_to_group("cid1", "sampleMarkdown", {"title": "t", "text": "x"})
    assert rec.paths().count("/v1.0/oauth2/accessToken") == 0  # base path is kept
    assert rec.paths() == [
        "/prefix/v1.0/oauth2/accessToken",
        "/prefix/v1.0/robot/oToMessages/batchSend",
        "/prefix/v1.0/robot/groupMessages/send",
    ]
    assert all(r.headers["x-acs-dingtalk-access-token"] == "tok1" for r in rec.requests[1:])
    user = json.loads(rec.requests[1].content)
    assert user == {
        "robotCode": "robot1",
        "userIds": ["u1"],
        "msgKey": "sampleText",
        "msgParam": '{"content": "hi"}',
    }
    group = json.loads(rec.requests[2].content)
    assert group["openConversationId"] == "cid1"
    assert json.loads(group["msgParam"]) == {"title": "t", "text": "x"}


async def test_token_is_shared_through_the_store() -> None:
    store = MemoryStore()
    first, _ = make_api(lambda r: httpx.Response(200, json={}), store)
    second, rec2 = make_api(lambda r: httpx.Response(200, json={}), store)
    assert await first.token.get() == "tok1"
    assert await second.token.get() == "tok1"
    assert rec2.paths() == []


async def test_rejected_token_is_replaced_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["x-acs-dingtalk-access-token"] == "tok1":
            return httpx.Response(401, json={"code": "InvalidAuthentication", "message": "no"})
        return httpx.Response(200, json={"success": True})

    api, rec = make_api(handler)
    await api.update_card("track", {"flowStatus": "3"})
    assert [p.rsplit("/", 2)[-1] for p in rec.paths()] == [
        "accessToken",
        "instances",
        "accessToken",
        "instances",
    ]


async def test_persistent_401_is_an_error_not_a_loop() -> None:
    api, rec = make_api(lambda r: httpx.Response(401, json={"code": "InvalidAuthentication"}))
    with pytest.raises(PlatformError) as info:
        await api.update_card("track", {})
    assert info.value.code == "InvalidAuthentication"
    assert len(rec.requests) == 4


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after"),
    [
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, {}, 1.0),
        (403, {"code": "Forbidden.AccessDenied.QpsLimitForApi"}, {}, 1.0),
        (429, {}, {"Retry-After": "7"}, 7.0),
        (429, "not json", {}, 1.0),
    ],
)
async def test_throttling_is_rate_limited(
    status: int, body: object, headers: dict[str, str], retry_after: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    api, _ = make_api(handler)
    with pytest.raises(RateLimited) as info:
        await api.stream_card("t", "g", "msgContent", "text")
    assert info.value.retry_after == retry_after


async def test_other_errors_are_platform_errors() -> None:
    api, _ = make_api(lambda r: httpx.Response(400, json={"code": "param.invalid", "message": "m"}))
    with pytest.raises(PlatformError) as info:
        await api.create_and_deliver_card({})
    assert not isinstance(info.value, RateLimited)
    assert info.value.code == "param.invalid"


async def test_success_false_is_an_error() -> None:
    api, _ = make_api(lambda r: httpx.Response(200, json={"success": False, "code": "x"}))
    with pytest.raises(PlatformError):
        await api.update_card("t", {})


async def test_flow_controlled_user_is_rate_limited() -> None:
    api, _ = make_api(
        lambda r: httpx.Response(
            200, json={"processQueryKey": "k", "flowControlledStaffIdList": ["u1"]}
        )
    )
    with pytest.raises(RateLimited):
        await api.send_to_user("u1", "sampleText", {"content": "x"})


async def test_invalid_user_is_an_error() -> None:
    api, _ = make_api(lambda r: httpx.Response(200, json={"invalidStaffIdList": ["u1"]}))
    with pytest.raises(PlatformError, match="invalidStaffId"):
        await api.send_to_user("u1", "sampleText", {"content": "x"})


async def test_stream_card_body() -> None:
    api, rec = make_api(lambda r: httpx.Response(200, json={"success": True}))
    await api.stream_card("track-1", "guid-1", "msgContent", "partial")
    request = rec.requests[-1]
    assert request.method == "PUT"
    assert json.loads(request.content) == {
        "outTrackId": "track-1",
        "guid": "guid-1",
        "key": "msgContent",
        "content": "partial",
        "isFull": True,
        "isFinalize": False,
        "isError": False,
    }


async def test_download_resolves_the_code_then_fetches() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messageFiles/download"):
            assert json.loads(request.content) == {"downloadCode": "dc", "robotCode": "robot1"}
            return httpx.Response(200, json={"downloadUrl": "https://files.example.test/f?sig=1"})
        assert request.url.host == "files.example.test"
        assert "x-acs-dingtalk-access-token" not in request.headers
        return httpx.Response(200, content=b"PNG", headers={"content-type": "image/png; q=1"})

    api, _ = make_api(handler)
    assert await api.download("dc") == (b"PNG", "image/png")


async def test_download_without_url_is_an_error() -> None:
    api, _ = make_api(lambda r: httpx.Response(200, json={"downloadUrl": "ftp://x"}))
    with pytest.raises(PlatformError):
        await api.download("dc")


async def test_open_connection_uses_client_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["clientId"] == "dingid"
        assert body["clientSecret"] == "s3cret"
        assert {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"} in body["subscriptions"]
        assert "x-acs-dingtalk-access-token" not in request.headers
        return httpx.Response(200, json={"endpoint": "wss://e", "ticket": "t"})

    api, _ = make_api(handler)
    subs = [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]
    assert await api.open_connection(subs) == ("wss://e", "t")


async def test_open_connection_without_ticket_is_an_error() -> None:
    api, _ = make_api(lambda r: httpx.Response(200, json={"endpoint": "wss://e"}))
    with pytest.raises(PlatformError):
        await api.open_connection([])


async def test_bad_token_response_is_an_error() -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"accessToken": "t"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(transport))
    api = DingtalkApi(
        http, MemoryStore(), api_base="https://x", client_id="a", client_secret="b", robot_code="a"
    )
    with pytest.raises(PlatformError, match="bad_token_response"):
        await api.token.get()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}), None),
        (httpx.Response(200, json={"errcode": 130101, "errmsg": "send too fast"}), RateLimited),
        (httpx.Response(429), RateLimited),
        (httpx.Response(200, json={"errcode": 300001, "errmsg": "session invalid"}), PlatformError),
        (httpx.Response(502), PlatformError),
    ],
)
def test_webhook_responses(response: httpx.Response, error: type[Exception] | None) -> None:
    if error is None:
        check_webhook(response)
    else:
        with pytest.raises(error):
            check_webhook(response)


async def test_network_failure_is_a_platform_error_without_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api, _ = make_api(handler)
    with pytest.raises(PlatformError) as info:
        await api.send_by_session(
            "https://oapi.dingtalk.com/robot/sendBySession?session=SECRET", {}
        )
    assert info.value.code == "network"
    assert "SECRET" not in str(info.value)
    with pytest.raises(PlatformError, match="network"):
        await api.update_card("t", {})


async def test_download_follows_redirects_without_a_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messageFiles/download"):
            return httpx.Response(200, json={"downloadUrl": "https://files.example.test/a"})
        assert "x-acs-dingtalk-access-token" not in request.headers
        if request.url.path == "/a":
            return httpx.Response(302, headers={"location": "/b"})
        return httpx.Response(200, content=b"data", headers={"content-type": "text/plain"})

    api, rec = make_api(handler)
    assert await api.download("dc") == (b"data", "text/plain")
    assert rec.paths()[-2:] == ["/a", "/b"]


async def test_endless_redirects_are_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messageFiles/download"):
            return httpx.Response(200, json={"downloadUrl": "https://files.example.test/a"})
        return httpx.Response(302, headers={"location": "/a"})

    api, _ = make_api(handler)
    with pytest.raises(PlatformError, match="too_many_redirects"):
        await api.download("dc")


async def test_oversized_download_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.dingtalk.api.MAX_DOWNLOAD_BYTES", 10)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messageFiles/download"):
            return httpx.Response(200, json={"downloadUrl": "https://files.example.test/a"})
        return httpx.Response(200, content=b"x" * 11)

    api, _ = make_api(handler)
    with pytest.raises(PlatformError, match="file_too_large"):
        await api.download("dc")


async def test_failed_file_fetch_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messageFiles/download"):
            return httpx.Response(200, json={"downloadUrl": "https://files.example.test/a"})
        return httpx.Response(403)

    api, _ = make_api(handler)
    with pytest.raises(PlatformError, match="http_403"):
        await api.download("dc")
