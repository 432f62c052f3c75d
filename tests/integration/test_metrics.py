"""The metrics an operator watches, after real traffic through the fakes: Dify's time to
first token, the time to the first thing the user sees, platform API errors, the queue."""

from __future__ import annotations

import asyncio

from gateway import outbound
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import bot_state, wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot


def sample(gateway: Gateway, name_and_labels: str) -> float | None:
    for line in gateway.metrics.render().decode().splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_latencies_errors_and_queue_after_real_answers(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    assert (await client.get("/healthz")).status == 200
    await wait_for(lambda: bot_state(gateway, "s") == "up", what="bot up")
    before = outbound.ERRORS[("slack", "channel_not_found")]
    slack.fail_next("chat.startStream", error="channel_not_found")  # the thinking state
    dify.reply(ScriptedReply(chunks=["first ", "answer"], delay=0.05))
    dify.reply(ScriptedReply(chunks=["second"]))
    for text in ("one", "two"):
        body = body_of(envelope(direct(text)))
        response = await client.post("/webhooks/s", data=body, headers=signed_headers(body))
        assert response.status == 200
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert sample(gateway, 'dify_gateway_dify_first_token_seconds_count{app="main"}') == 2.0
    assert sample(gateway, 'dify_gateway_first_update_seconds_count{bot="s"}') == 2.0
    # The whole time to first update is within the answer's: never negative, never larger.
    first = sample(gateway, 'dify_gateway_first_update_seconds_sum{bot="s"}')
    total = sample(gateway, 'dify_gateway_answer_seconds_sum{bot="s"}')
    assert first is not None and total is not None and 0 < first <= total
    assert outbound.ERRORS[("slack", "channel_not_found")] == before + 1
    errors = 'dify_gateway_platform_api_errors_total{code="channel_not_found",platform="slack"}'
    assert sample(gateway, errors) == before + 1
    assert sample(gateway, "dify_gateway_answers_queued") == 0.0
    assert sample(gateway, "dify_gateway_oldest_queued_seconds") == 0.0
    assert sample(gateway, 'dify_gateway_bot_up{bot="s",mode="events",platform="slack"}') == 1.0
    assert sample(gateway, 'dify_gateway_reloads_total{outcome="ok"}') is None  # none yet


async def test_queue_depth_and_the_oldest_wait_while_every_worker_is_busy(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    config = make_config(dify, {"s": slack_bot(slack)}, server={"max_concurrent_answers": 1})
    client, gateway = await gateway_factory(config)
    assert (await client.get("/healthz")).status == 200
    await wait_for(lambda: bot_state(gateway, "s") == "up", what="bot up")
    dify.reply(ScriptedReply(chunks=[f"w{i} " for i in range(10)], delay=0.1))
    dify.reply(ScriptedReply(chunks=["second"]))
    for user, channel in (("U1", "D1"), ("U2", "D2")):  # two conversations
        body = body_of(envelope(direct("hi", user=user, channel=channel)))
        response = await client.post("/webhooks/s", data=body, headers=signed_headers(body))
        assert response.status == 200
    await wait_for(lambda: len(dify.requests) == 1, what="the first answer running")
    await asyncio.sleep(0.3)
    assert sample(gateway, "dify_gateway_answers_running") == 1.0
    assert sample(gateway, "dify_gateway_answers_queued") == 1.0
    oldest = sample(gateway, "dify_gateway_oldest_queued_seconds")
    assert oldest is not None and 0.2 <= oldest < 5
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert sample(gateway, "dify_gateway_answers_queued") == 0.0
    assert sample(gateway, "dify_gateway_oldest_queued_seconds") == 0.0
