"""A platform message id with non-ASCII, a newline and control characters becomes the Dify
call's `X-Trace-Id` (via the job id): it must still be a valid header, so the message is
answered rather than met with the generic error."""

from __future__ import annotations

import asyncio

from gateway.dify import TRACE_ID_MAX, trace_id_header
from gateway.emulator import DifyEmulator, ScriptedReply
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import FakeFeishu, message_event, webhook_request
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot
from tests.integration.test_feishu_e2e import feishu_bot

ODD = "1710000000.000001é中\n\r\x00\x1b\x7f %"
HEADER_SAFE = set(map(chr, range(0x21, 0x7F)))


def test_an_ascii_id_is_sent_as_it_is() -> None:
    assert trace_id_header("slack-main:C111:1710000000.000184") == (
        "slack-main:C111:1710000000.000184"
    )


def test_any_id_becomes_a_bounded_stable_header_value() -> None:
    for job_id in (ODD, "fs:" + "é" * 300, "s:" + "x" * 500, "s:\ud800", "s:%41"):
        value = trace_id_header(job_id)
        assert set(value) <= HEADER_SAFE
        assert 0 < len(value) <= TRACE_ID_MAX
        assert value == trace_id_header(job_id)
    assert trace_id_header("s:a\nb") == "s:a%0Ab"
    assert trace_id_header("s:%41") == "s:%2541"  # not the same as "s:A"
    # Long ids that differ only at the end stay distinct.
    assert trace_id_header("s:" + "x" * 500 + "1") != trace_id_header("s:" + "x" * 500 + "2")


async def test_a_slack_message_with_an_odd_id_is_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    await wait_for(lambda: gateway.adapters["s"].ready)
    event = direct("hello", ts=ODD)
    body = body_of(envelope(event))
    response = await client.post("/webhooks/s", data=body, headers=signed_headers(body))
    assert response.status == 200
    async with asyncio.timeout(8):
        await gateway.inbox.wait_idle()
    (request,) = dify.requests
    assert request["_headers"]["X-Trace-Id"] == trace_id_header(f"s:D111:{ODD}")
    (reply,) = slack.thread("D111", ODD)
    assert reply.text == "Noted."


async def test_a_feishu_message_with_an_odd_id_is_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    client, gateway = await gateway_factory(make_config(dify, {"fs": feishu_bot(feishu)}))
    await wait_for(lambda: gateway.adapters["fs"].ready)
    message_id = "om_" + ODD
    body, headers = webhook_request(message_event("hello", message_id=message_id))
    response = await client.post("/webhooks/fs", data=body, headers=headers)
    assert response.status == 200
    async with asyncio.timeout(8):
        await gateway.inbox.wait_idle()
    (request,) = dify.requests
    assert request["_headers"]["X-Trace-Id"] == trace_id_header(f"fs:{message_id}")
    assert feishu.transcript() == ["Noted."]
