"""The AI bot's HTTP calls: response_url replies (doc path/101138) and encrypted media
downloads (AES-256-CBC with the per-URL aeskey or the EncodingAESKey, PKCS#7 to 32)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from adapters.wecom.crypto import aes_cbc_encrypt, aes_key
from adapters.wecom_bot.api import download_media, media_key, post_response_url
from gateway.platform import PlatformError, RateLimited

SECRET_URL = "https://qyapi.example/cgi-bin/aibot/response?response_code=SECRETCODE"
KEY_B64 = base64.b64encode(bytes(range(32))).decode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_response_url_gets_one_markdown_message() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    async with client(handler) as http:
        await post_response_url(http, SECRET_URL, "**rest** of the answer")
    (request,) = seen
    assert request.method == "POST" and str(request.url) == SECRET_URL
    assert json.loads(request.content) == {
        "msgtype": "markdown",
        "markdown": {"content": "**rest** of the answer"},
    }


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (httpx.Response(200, json={"errcode": 40008, "errmsg": "invalid"}), PlatformError, "40008"),
        (httpx.Response(200, json={"errcode": 45009, "errmsg": "freq"}), RateLimited, "45009"),
        (httpx.Response(429, headers={"Retry-After": "7"}), RateLimited, "rate_limited"),
        (httpx.Response(502), PlatformError, "http_502"),
        (httpx.Response(200, text="<html>"), PlatformError, "bad_response"),
    ],
)
async def test_response_url_errors_are_typed(
    response: httpx.Response, error: type[PlatformError], code: str
) -> None:
    async with client(lambda request: response) as http:
        with pytest.raises(error) as caught:
            await post_response_url(http, SECRET_URL, "x")
    assert caught.value.code == code
    if isinstance(caught.value, RateLimited) and response.status_code == 429:
        assert caught.value.retry_after == 7.0


async def test_network_errors_never_show_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    async with client(handler) as http:
        with pytest.raises(PlatformError) as caught:
            await post_response_url(http, SECRET_URL, "x")
    assert "SECRETCODE" not in str(caught.value) and caught.value.code == "network"


async def test_a_missing_response_url_is_an_error_not_a_request() -> None:
    async with client(lambda request: httpx.Response(500)) as http:
        with pytest.raises(PlatformError, match="no_response_url"):
            await post_response_url(http, "", "x")


async def test_media_is_decrypted_with_the_per_url_key() -> None:
    cipher = aes_cbc_encrypt(media_key(KEY_B64), PNG)
    headers = {"Content-Disposition": "attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.png"}
    async with client(lambda request: httpx.Response(200, content=cipher, headers=headers)) as http:
        media = await download_media(http, "https://media.example/x", media_key(KEY_B64))
    assert (media.data, media.mime_type, media.extension) == (PNG, "image/png", ".png")
    assert media.filename == "报告.png"


async def test_media_is_decrypted_with_the_encoding_aes_key() -> None:
    key = aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
    assert media_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C") == key
    payload = b"%PDF-1.4 report"
    cipher = aes_cbc_encrypt(key, payload)
    headers = {"Content-Disposition": 'attachment; filename="q3 report.pdf"'}
    async with client(lambda request: httpx.Response(200, content=cipher, headers=headers)) as http:
        media = await download_media(http, "https://media.example/y", key)
    assert media.data == payload and media.mime_type == "application/pdf"
    assert media.filename == "q3 report.pdf"


async def test_media_with_the_wrong_key_fails_cleanly() -> None:
    cipher = aes_cbc_encrypt(bytes(32), PNG)
    async with client(lambda request: httpx.Response(200, content=cipher)) as http:
        with pytest.raises(PlatformError) as caught:
            await download_media(http, "https://media.example/x", media_key(KEY_B64))
    assert caught.value.code == "media_decrypt"


async def test_expired_media_url_is_a_platform_error() -> None:
    async with client(lambda request: httpx.Response(403)) as http:
        with pytest.raises(PlatformError, match="http_403"):
            await download_media(http, "https://media.example/x", media_key(KEY_B64))


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_media_keys_are_rejected(bad: str) -> None:
    with pytest.raises(PlatformError, match="bad_media_key"):
        media_key(bad)


async def test_unknown_content_is_octet_stream_and_path_separators_are_removed() -> None:
    cipher = aes_cbc_encrypt(media_key(KEY_B64), b"plain bytes")
    headers = {"Content-Disposition": 'attachment; filename="../../etc/passwd"'}
    async with client(lambda request: httpx.Response(200, content=cipher, headers=headers)) as http:
        media = await download_media(http, "https://media.example/z", media_key(KEY_B64))
    assert media.mime_type == "application/octet-stream" and media.extension == ""
    assert media.filename is not None and "/" not in media.filename
