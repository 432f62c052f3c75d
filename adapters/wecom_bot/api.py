"""The AI bot's two HTTP calls: a proactive reply to a callback's `response_url`, and the
download of an encrypted image or file.

- `response_url` (doc path/101138): POST `{"msgtype":"markdown","markdown":{"content"}}`,
  once per callback, within 1 hour. The answer is `{"errcode","errmsg"}`.
- Media URLs (path/100719) serve AES-256-CBC ciphertext, valid 5 minutes: in WebSocket
  mode with the per-URL `aeskey` (aibot-node-sdk `src/crypto.ts`), in webhook mode with the
  bot's EncodingAESKey. Key = base64-decode(key), IV = key[:16], PKCS#7 to 32 bytes.

Both URLs are capabilities: they never go into logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from adapters.wecom.crypto import aes_cbc_decrypt
from adapters.wecom_bot.protocol import markdown_body
from gateway.platform import PlatformError, RateLimited, VerificationFailed

PLATFORM = "wecom_bot"
MAX_MEDIA_BYTES = 100 << 20  # WeCom's file limit (100 MB) plus nothing: reject beyond it
RATE_LIMITED = {45009, 45033}  # api freq out of limit; too many concurrent calls
_FILENAME = re.compile(r"""filename\*=UTF-8''([^;\s]+)|filename="?([^";]+)"?""", re.I)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
    (b"%PDF-", "application/pdf", ".pdf"),
)


def _network_error(exc: httpx.HTTPError) -> PlatformError:
    # httpx messages can carry the URL; only the error's type goes out.
    return PlatformError(PLATFORM, "network", type(exc).__name__)


def _check_status(response: httpx.Response) -> None:
    if response.status_code == 429:
        raise RateLimited(PLATFORM, _retry_after(response))
    if response.status_code >= 400:
        raise PlatformError(PLATFORM, f"http_{response.status_code}")


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(1.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


async def post_response_url(http: httpx.AsyncClient, url: str, content: str) -> None:
    """Send one Markdown message through a callback's response_url."""
    if not url.startswith(("https://", "http://")):
        raise PlatformError(PLATFORM, "no_response_url", "the callback carried no response_url")
    try:
        response = await http.post(url, json=markdown_body(content))
    except httpx.HTTPError as exc:
        raise _network_error(exc) from None
    _check_status(response)
    try:
        data = response.json()
    except ValueError:
        raise PlatformError(PLATFORM, "bad_response", "response_url answered non-JSON") from None
    code = data.get("errcode", 0) if isinstance(data, dict) else -1
    if code in RATE_LIMITED:
        raise RateLimited(PLATFORM, 1.0, str(code))
    if code != 0:
        raise PlatformError(PLATFORM, str(code), str(data.get("errmsg", "")))


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
            _check_status(response)
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES + 32:
                    raise PlatformError(PLATFORM, "too_large", "the file is over 100 MB")
                chunks.append(chunk)
            disposition = response.headers.get("Content-Disposition", "")
            declared = response.headers.get("Content-Type", "").split(";")[0].strip()
    except httpx.HTTPError as exc:
        raise _network_error(exc) from None
    try:
        data = aes_cbc_decrypt(key, b"".join(chunks))
    except VerificationFailed:
        raise PlatformError(PLATFORM, "media_decrypt", "could not decrypt the file") from None
    mime, extension = _sniff(data, declared)
    return Media(data, _filename(disposition), mime, extension)


def _sniff(data: bytes, declared: str) -> tuple[str, str]:
    for magic, mime, extension in _MAGIC:
        if data.startswith(magic):
            return mime, extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    # The server labels the ciphertext, which says little; prefer a neutral type.
    usable = declared and declared != "application/octet-stream" and "/" in declared
    return (declared if usable else "application/octet-stream"), ""


def _filename(disposition: str) -> str | None:
    m = _FILENAME.search(disposition)
    if m is None:
        return None
    name = unquote(m.group(1) or m.group(2) or "").strip()
    name = name.replace("/", "_").replace("\\", "_")
    return name or None
