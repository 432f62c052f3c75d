"""Slack Socket Mode against a fake Socket Mode server: hello, envelopes acked by id,
answers delivered, and the bot keeps answering after `disconnect` and after a dropped socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.emulator import DifyEmulator
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import direct, envelope


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


def socket_envelope(event: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "envelope_id": f"env-{n}",
        "type": "events_api",
        "payload": envelope(event),
        "accepts_response_payload": False,
        "retry_attempt": 0,
        "retry_reason": "",
    }


async def test_socket_mode_acks_answers_and_survives_reconnects(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    bot = {
        "platform": "slack",
        "app": "main",
        "mode": "socket",
        "api_base": slack.base_url,
        "bot_token": BOT_TOKEN,
        "app_token": APP_TOKEN,
    }
    client, gateway = await gateway_factory(make_config(dify, {"slack-sock": bot}))
    adapter = gateway.adapters["slack-sock"]
    await wait_for(lambda: adapter.ready, what="socket connected")
    # A long-connection bot serves no webhook.
    assert (await client.post("/webhooks/slack-sock", data=b"{}")).status == 404

    sent: dict[int, dict[str, Any]] = {}

    async def ask(n: int) -> None:
        event = direct(f"question {n}")
        sent[n] = socket_envelope(event, n)
        await slack.socket_send(sent[n])
        await wait_for(lambda: f"env-{n}" in slack.acks, what=f"ack of env-{n}")
        await wait_for(
            lambda: any(
                m.text.startswith("You asked") and not m.open
                for m in slack.thread("D111", event["ts"])
            ),
            what=f"answer {n}",
        )

    await ask(1)
    # The same envelope redelivered (Slack retries unacked ones) is acked, not answered again.
    await slack.socket_send({**sent[1], "retry_attempt": 1, "retry_reason": "timeout"})
    await wait_for(lambda: slack.acks.count("env-1") == 2, what="ack of the redelivery")
    await ask(2)

    await slack.socket_send({"type": "disconnect", "reason": "refresh_requested"})
    await wait_for(lambda: slack.socket_connections == 2 and adapter.ready, what="reconnect")
    await ask(3)

    await slack.socket_drop()
    await wait_for(
        lambda: slack.socket_connections == 3 and adapter.ready,
        within=8,
        what="reconnect after a drop",
    )
    await ask(4)
    assert [r["query"] for r in dify.requests] == [f"question {n}" for n in (1, 2, 3, 4)]
    assert len(slack.of("apps.connections.open")) == 3
