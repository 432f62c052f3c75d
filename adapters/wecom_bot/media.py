"""The app's files over the AI bot's long connection (WebSocket mode only).

A stream reply carries images only (`msg_item`, JPG or PNG). In WebSocket mode any other
file can be uploaded over the same connection and sent as a file message (WeCom's
`aibot-node-sdk`, `uploadMedia`): `aibot_upload_media_init{type, filename, total_size,
total_chunks, md5}` answers an `upload_id`; `aibot_upload_media_chunk{upload_id,
chunk_index, base64_data}` carries at most 512 KB of raw bytes each, at most 100 chunks;
`aibot_upload_media_finish{upload_id}` answers the `media_id` (valid 3 days), which
`aibot_send_msg{chatid, msgtype: "file", file: {media_id}}` posts. Webhook mode has no
upload, so there the core names the file instead.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from adapters.wecom_bot.connection import PLATFORM, WsLink, new_req_id
from gateway.platform import OutputFile, PlatformError

CHUNK_BYTES = 512 * 1024
MAX_CHUNKS = 100
MAX_FILE_BYTES = CHUNK_BYTES * MAX_CHUNKS
MIN_FILE_BYTES = 6  # WeCom refuses media of 5 bytes or fewer (the self-built app's rule)


def fits(file: OutputFile) -> bool:
    return MIN_FILE_BYTES <= len(file.data) <= MAX_FILE_BYTES


def file_body(media_id: str) -> dict[str, Any]:
    return {"msgtype": "file", "file": {"media_id": media_id}}


async def upload(link: WsLink, file: OutputFile) -> str:
    """Upload `file` as a `file` medium; returns its media id. Raises `PlatformError`."""
    data = file.data
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    init = await _request(
        link,
        "aibot_upload_media_init",
        {
            "type": "file",
            "filename": file.name,
            "total_size": len(data),
            "total_chunks": len(chunks),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        },
    )
    upload_id = _field(init, "upload_id")
    for index, chunk in enumerate(chunks):
        body = {
            "upload_id": upload_id,
            "chunk_index": index,
            "base64_data": base64.b64encode(chunk).decode(),
        }
        await _request(link, "aibot_upload_media_chunk", body)
    return _field(
        await _request(link, "aibot_upload_media_finish", {"upload_id": upload_id}), "media_id"
    )


async def _request(link: WsLink, cmd: str, body: dict[str, Any]) -> dict[str, Any]:
    return await link.request(cmd, new_req_id(cmd), body)


def _field(ack: dict[str, Any], name: str) -> str:
    body = ack.get("body")
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise PlatformError(PLATFORM, f"no_{name}", "media upload")
    return value
