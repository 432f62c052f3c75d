"""Slack Socket Mode against a fake Socket Mode server: hello, envelopes acked by id,
answers delivered, and the bot keeps answering after `disconnect` and after a dropped socket.
Envelopes the gateway cannot take (store down, shutting down) are not acked."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.helpers import bot_state, wait_for
from tests.integration.slack_helpers import direct, envelope


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


SOCKET_BOT = {"platform": "slack", "app": "main", "mode": "socket"}


async def _socket_gateway(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, store: MemoryStore
) -> tuple[TestClient[Any, Any], Gateway]:
    bot = {
        **SOCKET_BOT,
        "api_base": slack.base_url,
        "bot_token": BOT_TOKEN,
        "app_token": APP_TOKEN,
    }
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Answer to ", request["query"]])
    client, gateway = await gateway_factory(make_config(dify, {"slack-sock": bot}), store=store)
    adapter = gateway.adapters["slack-sock"]
    await wait_for(lambda: adapter.ready and slack.socket_connections >= 1, what="socket up")
    return client, gateway


async def _answered(slack: FakeSlack, event: dict[str, Any]) -> None:
    await wait_for(
        lambda: any(
            m.text == f"Answer to {event['text']}" and not m.open
            for m in slack.thread("D111", event["ts"])
        ),
        what="the answer",
    )


async def _handled_before(slack: FakeSlack, n: int) -> None:
    """Envelopes are handled in order: once an envelope sent after the others is acked,
    every one before it was handled (acked or not)."""
    await slack.socket_send({"envelope_id": f"sentinel-{n}", "type": "slash_commands"})
    await wait_for(lambda: f"sentinel-{n}" in slack.acks, what="the sentinel's ack")


async def test_an_envelope_the_store_cannot_take_is_not_acked(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    _client, _gateway = await _socket_gateway(gateway_factory, dify, slack, store)
    real_accept = store.accept

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis is down")

    monkeypatch.setattr(store, "accept", down)
    event = direct("survive the outage")
    lost = socket_envelope(event, 1)
    await slack.socket_send(lost)
    await _handled_before(slack, 1)
    assert "env-1" not in slack.acks and dify.requests == []

    monkeypatch.setattr(store, "accept", real_accept)
    await slack.socket_send({**lost, "retry_attempt": 1, "retry_reason": "timeout"})
    await wait_for(lambda: "env-1" in slack.acks, what="the redelivery's ack")
    await _answered(slack, event)
    assert [r["query"] for r in dify.requests] == ["survive the outage"]


async def test_during_shutdown_an_envelope_is_left_for_the_next_instance(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    store = MemoryStore()
    client, gateway = await _socket_gateway(gateway_factory, dify, slack, store)
    gateway.begin_shutdown()
    event = direct("asked during the drain")
    envelope_ = socket_envelope(event, 1)
    await slack.socket_send(envelope_)
    await _handled_before(slack, 1)
    assert "env-1" not in slack.acks  # not acked: Slack delivers it again
    assert dify.requests == [] and slack.thread("D111", event["ts"]) == []  # not answered

    await client.close()  # the old instance finishes shutting down
    await _socket_gateway(gateway_factory, dify, slack, store)  # a fresh one, same store
    await slack.socket_send({**envelope_, "retry_attempt": 1, "retry_reason": "timeout"})
    await wait_for(lambda: "env-1" in slack.acks, what="the redelivery's ack")
    await _answered(slack, event)
    # Nothing was claimed during the drain: the redelivery is new to the store.
    assert [r["query"] for r in dify.requests] == ["asked during the drain"]


async def test_a_dropped_socket_is_reported_once_and_the_instance_stays_ready(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.bot_state")
    client, gateway = await _socket_gateway(gateway_factory, dify, slack, MemoryStore())
    await wait_for(lambda: bot_state(gateway, "slack-sock") == "up", what="up")
    slack.fail_next("apps.connections.open", error="invalid_auth", times=2)
    await slack.socket_drop()
    await wait_for(lambda: bot_state(gateway, "slack-sock") == "retrying", what="retrying")
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["bots"] == {"slack-sock": "retrying"}
    assert 'dify_gateway_bot_up{bot="slack-sock",mode="socket",platform="slack"} 0.0' in (
        gateway.metrics.render().decode()
    )
    await wait_for(lambda: bot_state(gateway, "slack-sock") == "up", within=10, what="back up")
    state = gateway.bot_states.get("slack-sock")
    assert state is not None and state.last_error is not None
    assert "invalid_auth" in state.last_error and APP_TOKEN not in state.last_error
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.bot_state"]
    assert lines[0] == "bot slack-sock (slack) is starting"
    assert lines[1:] == [
        "bot slack-sock (slack, socket) is up",
        lines[2],  # the reason: the drop, as the connection or the watcher saw it first
        "bot slack-sock (slack, socket) is up",
    ]
    assert lines[2].startswith("bot slack-sock (slack) is retrying: ")
    # Three failed tries (the drop, two refusals), one line; no warning per try either.
    assert sum("is retrying" in line for line in lines) == 1
    assert not [r for r in caplog.records if r.name == "gateway.longconn" and r.levelno > 20]


async def test_a_click_arrives_as_an_interactive_envelope_and_is_acked(
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
    _client, gateway = await gateway_factory(make_config(dify, {"slack-sock": bot}))
    await wait_for(lambda: gateway.adapters["slack-sock"].ready, what="socket connected")
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    event = direct("how many days?")
    await slack.socket_send(socket_envelope(event, 1))
    await wait_for(lambda: any(m.blocks for m in slack.thread("D111", event["ts"])))
    await gateway.inbox.wait_idle()
    (answer,) = slack.thread("D111", event["ts"])
    clicked = {"envelope_id": "env-click", "type": "interactive", "payload": None}
    clicked["payload"] = slack.click(answer, "dgw_like")
    await slack.socket_send(clicked)
    await wait_for(lambda: bool(dify.feedbacks), what="the rating in Dify")
    await wait_for(lambda: "env-click" in slack.acks, what="the click acked")
    (rating,) = dify.feedbacks
    assert rating["rating"] == "like" and rating["user"] == "slack-sock:U222"
