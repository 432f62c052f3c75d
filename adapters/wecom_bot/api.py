"""The AI bot's two HTTP calls: a proactive reply to a callback's `response_url`, and the
download of an encrypted image or file.

- `response_url` (doc path/101138): POST `{"msgtype":"markdown","markdown":{"content"}}`
  or a template card, once per callback, within 1 hour. The answer is `{"errcode","errmsg"}`.
- Media URLs (path/100719) serve AES-256-CBC ciphertext, valid 5 minutes: in WebSocket
  mode with the per-URL `aeskey` (aibot-node-sdk `src/crypto.ts`), in webhook mode with the
  bot's EncodingAESKey. Key = base64-decode(key), IV = key[:16], PKCS#7 to 32 bytes.

Both URLs are capabilities: they never go into logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.wecom.crypto import aes_cbc_decrypt
from adapters.wecom_bot.protocol import markdown_body
from gateway.files import disposition_filename, extension, file_type, sniff
from gateway.outbound import Answer, JsonApi, network_error
from gateway.platform import PlatformError, VerificationFailed

PLATFORM = "wecom_bot"
MAX_MEDIA_BYTES = 100 << 20  # WeCom's file limit (100 MB) plus nothing: reject beyond it
RATE_LIMITED = {45009, 45033}  # api freq out of limit; too many concurrent calls


def _check_reply(answer: Answer) -> dict[str, Any]:
    if answer.status >= 400:
        raise PlatformError(PLATFORM, f"http_{answer.status}")
    body = answer.body
    if body is None:
        raise PlatformError(PLATFORM, "bad_response", "response_url answered non-JSON")
    code = body.get("errcode", 0)
    if code != 0:
        raise PlatformError(PLATFORM, str(code), str(body.get("errmsg", "")))
    return body


API = JsonApi(
    PLATFORM,
    _check_reply,
    error_code=lambda body: body.get("errcode"),
    rate_limit_codes=dict.fromkeys(RATE_LIMITED, 1.0),
    minimum_wait=1.0,  # a Retry-After of 0 would only run into the same limit again
)


async def post_response_url(http: httpx.AsyncClient, url: str, content: str) -> None:
    """Send one Markdown message through a callback's response_url."""
    await send_response_url(http, url, markdown_body(content))


async def send_response_url(http: httpx.AsyncClient, url: str, body: Mapping[str, Any]) -> None:
    """Send one message (Markdown or a template card) through a callback's response_url."""
    if not url.startswith(("https://", "http://")):
        raise PlatformError(PLATFORM, "no_response_url", "the callback carried no response_url")
    await API.send(http, "POST", url, what="response_url", json=dict(body))


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    filename: str | None
    mime_type: str
    extension: str


def media_key(key_b64: str) -> bytes:
    """The AES key of a media URL: a per-URL `aeskey` (base64, maybe unpadded) or the
    43-character EncodingAESKey."""
    try:
        key = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PlatformError(PLATFORM, "bad_media_key", "aeskey is not base64") from None
    if len(key) != 32:
        raise PlatformError(PLATFORM, "bad_media_key", "aeskey is not 32 bytes")
    return key


async def download_media(http: httpx.AsyncClient, url: str, key: bytes) -> Media:
    try:
        async with http.stream("GET", url) as response:
            if response.status_code >= 400:
                API.raise_if_limited(response.status_code, response.headers)
                raise PlatformError(PLATFORM, f"http_{response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES + 32:
                    raise PlatformError(PLATFORM, "too_large", "the file is over 100 MB")
                chunks.append(chunk)
            disposition = response.headers.get("Content-Disposition", "")
            declared = response.headers.get("Content-Type", "")
    except httpx.HTTPError as exc:
        raise network_error(PLATFORM, "media download", exc) from None
    try:
        data = aes_cbc_decrypt(key, b"".join(chunks))
    except VerificationFailed:
        raise PlatformError(PLATFORM, "media_decrypt", "could not decrypt the file") from None
    # The server labels the ciphertext, which says little: the bytes decide.
    sniffed = sniff(data)
    mime = file_type(data, declared)
    return Media(data, disposition_filename(disposition), mime, extension(mime) if sniffed else "")
