"""WeCom AI bot (智能机器人) callback envelope: unsealing callbacks, sealing replies, and the
JSON reply bodies.

Facts, from the official pages:

- Callbacks are JSON `{"encrypt": …}` with `msg_signature`, `timestamp` and `nonce` in the
  query; the plaintext is JSON, encrypted with receiveid `""` (doc path/101033, 加解密方案).
  The signature covers the timestamp, so a callback (or URL check) whose timestamp is
  further than the bot's `max_timestamp_age_s` from now is refused like a bad signature.
- URL verification is a GET with `echostr`, answered with the bare plaintext (path/101033).
- A reply is `{"encrypt","msgsignature","timestamp","nonce"}`, signed over its own
  timestamp and nonce; the official Python sample (WXBizJsonMsgCrypt) sends the timestamp as
  a string.
- Stream replies: `{"msgtype":"stream","stream":{"id","finish","content","feedback"}}`,
  `content` ≤ 20,480 UTF-8 bytes of Markdown, `feedback.id` ≤ 256 bytes and only on the
  first reply (path/101031; aibot-node-sdk `src/types/api.ts`).
- A template card (cards.py) goes out as `{"msgtype":"template_card","template_card":…}`
  (response_url, `aibot_send_msg`); a click's callback is answered with
  `{"response_type":"update_template_card","template_card":…}` (aibot-node-sdk
  `src/types/api.ts`).
- The `enter_chat` welcome is `{"msgtype":"text","text":{"content":…}}` (path/101031).
- Images go into the final stream reply only (`finish:true`): `stream.msg_item`, at most 10
  items `{"msgtype":"image","image":{"base64","md5"}}`, JPG or PNG of at most 10 MB before
  base64, `md5` of the raw bytes (path/101031).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.wecom.crypto import WecomCrypto, check_timestamp
from gateway import safejson
from gateway.models import HttpResponse, WebhookRequest
from gateway.platform import MalformedRequest, VerificationFailed

MAX_CONTENT_BYTES = 20480
MAX_FEEDBACK_ID_BYTES = 256
MAX_ITEMS = 10
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/jpeg", "image/png"})


def stream_id(bot: str, msgid: str) -> str:
    """The stream id of the answer to `msgid`: derived, not random, so a retried callback
    (same msgid, maybe on another instance) gets the same stream back."""
    # surrogatepass: a msgid from anywhere but our JSON parser must not raise here.
    return hashlib.sha256(f"{bot}\n{msgid}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _query(request: WebhookRequest, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise VerificationFailed(f"wecom_bot: query parameter {name} is missing")
    return value


def _base64_query(request: WebhookRequest, name: str) -> str:
    # The edge hands us decoded query values; an unencoded "+" in base64 arrives as a space.
    return _query(request, name).replace(" ", "+")


def verify_url(crypto: WecomCrypto, request: WebhookRequest, max_age_s: float) -> bytes:
    """The echostr plaintext of a GET URL verification. Raises `VerificationFailed`."""
    echostr = _base64_query(request, "echostr")
    signature, timestamp = _query(request, "msg_signature"), _query(request, "timestamp")
    check_timestamp(timestamp, request.received_at, max_age_s)
    crypto.verify(signature, timestamp, _query(request, "nonce"), echostr)
    return crypto.decrypt(echostr)


def unseal(crypto: WecomCrypto, request: WebhookRequest, max_age_s: float) -> dict[str, Any]:
    """Verify and decrypt a POST callback into its JSON payload.

    The signature (and the age of the timestamp it covers) is checked before anything is
    decrypted; a body that is not a JSON object is a 400, and so is a decrypted payload that
    is not one; everything that fails authentication is a 401."""
    signature = _query(request, "msg_signature")
    timestamp, nonce = _query(request, "timestamp"), _query(request, "nonce")
    try:
        envelope = safejson.loads(request.body)
    except safejson.JSONError as exc:
        raise MalformedRequest(f"wecom_bot: body: {exc}") from None
    encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
    if not isinstance(encrypt, str) or not encrypt:
        raise MalformedRequest("wecom_bot: body has no encrypt field")
    check_timestamp(timestamp, request.received_at, max_age_s)
    crypto.verify(signature, timestamp, nonce, encrypt)
    plaintext = crypto.decrypt(encrypt)
    try:
        return safejson.loads_object(plaintext)
    except safejson.JSONError as exc:
        raise MalformedRequest(f"wecom_bot: decrypted callback: {exc}") from None


def dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def seal(crypto: WecomCrypto, payload: Mapping[str, Any]) -> HttpResponse:
    """An encrypted, signed JSON reply to a callback."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    encrypt, signature = crypto.encrypt_reply(dumps(payload).encode(), timestamp, nonce)
    return HttpResponse.json(
        {"encrypt": encrypt, "msgsignature": signature, "timestamp": timestamp, "nonce": nonce}
    )


def stream_body(
    sid: str,
    content: str,
    *,
    finish: bool,
    feedback_id: str | None = None,
    items: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    stream: dict[str, Any] = {"id": sid, "finish": finish, "content": content}
    if feedback_id and len(feedback_id.encode()) <= MAX_FEEDBACK_ID_BYTES:
        stream["feedback"] = {"id": feedback_id}
    if finish and items:
        stream["msg_item"] = [dict(item) for item in items[:MAX_ITEMS]]
    return {"msgtype": "stream", "stream": stream}


def image_item(data: bytes) -> dict[str, Any]:
    """One `msg_item` image: base64 of the bytes and the md5 of the raw bytes."""
    return {
        "msgtype": "image",
        "image": {
            "base64": base64.b64encode(data).decode(),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        },
    }


def text_body(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


def markdown_body(content: str) -> dict[str, Any]:
    """A proactive reply (response_url, or `aibot_send_msg` in WebSocket mode)."""
    return {"msgtype": "markdown", "markdown": {"content": content}}


def template_card_body(card: Mapping[str, Any]) -> dict[str, Any]:
    """A template card as a message (response_url, or `aibot_send_msg`)."""
    return {"msgtype": "template_card", "template_card": dict(card)}


def card_update_body(card: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a card click that redraws the card (its `task_id` unchanged)."""
    return {"response_type": "update_template_card", "template_card": dict(card)}
