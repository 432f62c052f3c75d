"""Hostile bodies through the real edge: a 400 or 401 and one log line each, never a
traceback (each once came out of an adapter as another exception, which the edge caught
as a 400 and logged in full)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from gateway.emulator import DifyEmulator
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import ENCRYPT_KEY, VERIFICATION_TOKEN, FakeFeishu
from tests.fakes.wecom_bot import VECTOR_AES_KEY, VECTOR_TOKEN, WecomSide, event_payload
from tests.helpers import wait_for


def bots(feishu: FakeFeishu) -> dict[str, Any]:
    return {
        "feishu": {
            "platform": "feishu",
            "app": "main",
            "api_base": feishu.base_url,
            "app_id": feishu.app_id,
            "app_secret": feishu.app_secret,
            "verification_token": VERIFICATION_TOKEN,
            "encrypt_key": ENCRYPT_KEY,
        },
        "wecom-ai": {
            "platform": "wecom_bot",
            "app": "main",
            "token": VECTOR_TOKEN,
            "encoding_aes_key": VECTOR_AES_KEY,
        },
    }


async def test_hostile_bodies_get_a_status_and_one_line_not_a_traceback(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    feishu: FakeFeishu,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, gateway = await gateway_factory(make_config(dify, bots(feishu)))
    await wait_for(lambda: all(a.ready for a in gateway.adapters.values()), what="bots ready")
    side = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)
    query = {"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"}
    feedback = event_payload("feedback_event", {"feedback_event": {"id": "m", "type": {}}})
    signed_feedback, feedback_body = side.seal(feedback)
    cases = [
        ("/webhooks/feishu", {}, b"[" * 100_000, 400),
        ("/webhooks/feishu", {}, b'{"token":"\\ud800"}', 400),
        ("/webhooks/wecom-ai", query, b"[" * 100_000, 400),
        ("/webhooks/wecom-ai", signed_feedback, feedback_body, 200),  # ignored, not a crash
    ]
    with caplog.at_level(logging.INFO):
        for path, params, body, status in cases:
            response = await client.post(path, params=params, data=body)
            assert response.status == status, (path, body[:40])
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert dify.requests == []
