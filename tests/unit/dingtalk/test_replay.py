"""HTTP mode accepts each `sign` once (adapters/dingtalk/replay.py): one captured
timestamp/sign pair carries one body, not any number; a retry of the same message with the
same pair reaches the dedupe; a store outage is a 503, never a 401."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from adapters.dingtalk.adapter import DingtalkAdapter
from adapters.dingtalk.replay import SignLedger
from gateway.config import DingtalkBot
from gateway.models import Ignored, Messages, WebhookRequest
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, MalformedRequest, VerificationFailed
from gateway.store import keys
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.fakes.dingtalk import CLIENT_ID, CLIENT_SECRET, signed_headers
from tests.unit.dingtalk.test_adapter import NoAssistant, no_deliver


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[list[str], float]] = []

    async def claim(self, keys: Sequence[str], ttl: float = 0) -> bool:
        self.claims.append((list(keys), ttl))
        return await super().claim(keys, ttl)


class DownStore(MemoryStore):
    async def claim(self, keys: Sequence[str], ttl: float = 0) -> bool:
        raise StoreUnavailable("down")


def make(store: MemoryStore) -> tuple[DingtalkAdapter, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    config = DingtalkBot.model_validate(
        {
            "platform": "dingtalk",
            "app": "main",
            "mode": "http",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    )
    context = AdapterContext(http, store, BotBudget(), no_deliver, NoAssistant())
    return DingtalkAdapter("ding", config, context), http


def message(msg_id: str, staff_id: str = "manager123", **extra: Any) -> bytes:
    payload = {
        "msgId": msg_id,
        "msgtype": "text",
        "text": {"content": "hello"},
        "conversationId": "cidDm0001==",
        "conversationType": "1",
        "senderId": "$:LWCP_v1:$senderAAAA==",
        "senderStaffId": staff_id,
        **extra,
    }
    return json.dumps(payload).encode()


def request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    lower = {k.lower(): v for k, v in headers.items()}
    return WebhookRequest("POST", "/webhooks/ding", {}, lower, body, time.time())


async def test_one_captured_pair_carries_one_body_not_twenty() -> None:
    adapter, http = make(MemoryStore())
    captured = signed_headers()
    try:
        first = await adapter.handle(request(message("msg-real"), captured))
        assert isinstance(first, Messages)
        for n in range(20):
            forged = message(f"msg-forged-{n}", staff_id=f"victim{n}")
            with pytest.raises(VerificationFailed, match="sign already used"):
                await adapter.handle(request(forged, captured))
        # An ignored body (an unknown conversation type) uses up its sign as well.
        odd = signed_headers()
        ignored = await adapter.handle(request(message("msg-odd", conversationType="9"), odd))
        assert isinstance(ignored, Ignored)
        with pytest.raises(VerificationFailed):
            await adapter.handle(request(message("msg-after-odd"), odd))
    finally:
        await http.aclose()


async def test_a_retry_with_the_same_pair_goes_on_to_the_dedupe() -> None:
    """Whether DingTalk re-signs a retried callback is not documented: if it reuses the
    pair, the same msgId passes here, and the core's dedupe answers it as a duplicate."""
    adapter, http = make(MemoryStore())
    captured = signed_headers()
    try:
        first = await adapter.handle(request(message("msg-1"), captured))
        retry = await adapter.handle(request(message("msg-1"), captured))
        assert isinstance(first, Messages) and isinstance(retry, Messages)
        assert retry.messages[0].dedupe_keys == first.messages[0].dedupe_keys
    finally:
        await http.aclose()


async def test_a_respelled_sign_is_the_same_sign() -> None:
    adapter, http = make(MemoryStore())
    captured = signed_headers()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sign = captured["sign"]
    respelled = {**captured, "sign": sign[:42] + alphabet[alphabet.index(sign[42]) ^ 1] + "="}
    try:
        await adapter.handle(request(message("msg-1"), captured))
        with pytest.raises(VerificationFailed):
            await adapter.handle(request(message("msg-2"), respelled))
    finally:
        await http.aclose()


async def test_the_claim_is_made_after_verifying_and_lasts_the_window() -> None:
    store = RecordingStore()
    adapter, http = make(store)
    try:
        with pytest.raises(VerificationFailed):  # a bad sign claims nothing
            await adapter.handle(request(message("m"), signed_headers(secret="wrong")))
        with pytest.raises(MalformedRequest):  # nor does a bad body
            await adapter.handle(request(b'{"msgtype": "text"}', signed_headers()))
        assert store.claims == []
        headers = signed_headers()
        await adapter.handle(request(message("m"), headers))
        (claimed, ttl), *_ = store.claims
        assert claimed == [keys.dingtalk_sign("ding", headers["sign"])]
        assert 3600 < ttl <= 3661  # signed now: valid one more hour (plus a margin)
        recorded = await store.get(keys.dingtalk_signed_message("ding", headers["sign"]))
        assert recorded == "m"
    finally:
        await http.aclose()


async def test_a_store_outage_is_a_503_not_a_401() -> None:
    adapter, http = make(DownStore())
    try:
        with pytest.raises(StoreUnavailable):  # the edge answers 503: DingTalk may retry
            await adapter.handle(request(message("m"), signed_headers()))
    finally:
        await http.aclose()


async def test_ledger_refuses_a_sign_whose_record_is_missing() -> None:
    """The claim without its record (the store failed in between): fail closed."""
    store = MemoryStore()
    await store.claim([keys.dingtalk_sign("ding", "S")], 60)
    with pytest.raises(VerificationFailed):
        await SignLedger(store, "ding").accept("S", "m", 60)
