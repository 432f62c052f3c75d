"""Reloading the config in a running gateway (what SIGHUP does): a bad file changes nothing,
bots come and go with their webhook paths, answers in flight finish under the config they
started with, and jobs for a bot that is gone are dead-lettered, never crash the worker."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.models import ChatType, InboundMessage, Messages
from gateway.platform import Delivery
from gateway.reload import plan, reload_config
from gateway.runtime import Gateway
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import bot_state, wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot


async def post(client: Any, bot: str, event: dict[str, Any]) -> int:
    body = body_of(envelope(event))
    response = await client.post(f"/webhooks/{bot}", data=body, headers=signed_headers(body))
    return int(response.status)


def metric(gateway: Gateway, line_start: str) -> float:
    for line in gateway.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


async def started(client: Any, gateway: Gateway, *bots: str) -> None:
    assert (await client.get("/healthz")).status == 200  # starts the gateway
    for bot in bots:
        await wait_for(lambda b=bot: bot_state(gateway, b) == "up", what=f"{bot} up")


async def test_a_bad_config_keeps_the_running_one_and_names_the_key(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tree = make_config(dify, {"s": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s")
    bad = copy.deepcopy(tree)
    bad["bots"]["s"]["app"] = "nope"
    bad["bots"]["t"] = slack_bot(slack)
    running = gateway.config
    assert not await reload_config(gateway, write(tmp_path / "bad.yaml", bad))
    assert "bots.s.app: no Dify app named 'nope'" in caplog.text
    assert "the running config stays" in caplog.text
    assert gateway.config is running and list(gateway.adapters) == ["s"]
    assert metric(gateway, 'dify_gateway_reloads_total{outcome="error"}') == 1.0
    assert metric(gateway, 'dify_gateway_reloads_total{outcome="ok"}') == 0.0
    assert await post(client, "t", direct("hi")) == 404
    dify.reply(ScriptedReply(chunks=["still here"]))
    event = direct("hello")
    assert await post(client, "s", event) == 200
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert slack.final_texts("D111", event["ts"]) == ["still here"]


async def test_bots_added_start_and_removed_ones_leave_the_edge(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, tmp_path: Path
) -> None:
    tree = make_config(dify, {"s": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s")
    old_s = gateway.adapters["s"]
    swapped = make_config(dify, {"t": slack_bot(slack)})
    assert await reload_config(gateway, write(tmp_path / "new.yaml", swapped))
    assert metric(gateway, 'dify_gateway_reloads_total{outcome="ok"}') == 1.0
    assert list(gateway.adapters) == ["t"] and gateway.adapters.get("s") is not old_s
    await wait_for(lambda: bot_state(gateway, "t") == "up", what="the new bot up")
    assert bot_state(gateway, "s") == "missing"
    assert await post(client, "s", direct("to the old bot")) == 404
    dify.reply(ScriptedReply(chunks=["from t"]))
    event = direct("to the new bot")
    assert await post(client, "t", event) == 200
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert slack.final_texts("D111", event["ts"]) == ["from t"]
    ready = await (await client.get("/readyz")).json()
    assert ready["bots"] == {"t": "up"}
    metrics = gateway.metrics.render().decode()
    assert 'dify_gateway_bot_up{bot="t",mode="events",platform="slack"} 1.0' in metrics
    assert 'bot="s"' not in metrics.split("dify_gateway_bot_up")[-1].split("# HELP")[0]


async def test_an_answer_in_flight_finishes_under_the_config_it_started_with(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, tmp_path: Path
) -> None:
    tree = make_config(
        dify, {"s": slack_bot(slack)}, routes=[{"match": {"bot": "s"}, "inputs": {"team": "old"}}]
    )
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s")
    old = gateway.adapters["s"]
    closed_at: list[float] = []
    real_close = old.aclose

    async def recording_close() -> None:
        closed_at.append(time.monotonic())
        await real_close()

    old.aclose = recording_close  # type: ignore[method-assign]
    words = [f"w{i} " for i in range(12)]
    dify.reply(ScriptedReply(chunks=words, delay=0.1))
    slow = direct("a slow question")
    assert await post(client, "s", slow) == 200
    await wait_for(lambda: len(dify.requests) == 1, what="the answer under way")
    # The bot changes (its locale), and so does its route.
    new = copy.deepcopy(tree)
    new["bots"]["s"]["locale"] = "zh-CN"
    new["routes"][0]["inputs"] = {"team": "new"}
    assert plan(gateway.config, parse_config(new, env={})).changed == ["s"]
    assert await reload_config(gateway, write(tmp_path / "new.yaml", new))
    assert gateway.adapters["s"] is not old
    assert closed_at == []  # its answer is still streaming
    await wait_for(lambda: bot_state(gateway, "s") == "up", what="the rebuilt bot up")
    dify.reply(ScriptedReply(chunks=["new config"]))
    fresh = direct("after the reload")
    assert await post(client, "s", fresh) == 200
    await asyncio.wait_for(gateway.inbox.wait_idle(), 15)
    finished_at = time.monotonic()
    assert slack.final_texts("D111", slow["ts"]) == ["".join(words)]
    assert slack.final_texts("D111", fresh["ts"]) == ["new config"]
    assert [r["inputs"] for r in dify.requests] == [{"team": "old"}, {"team": "new"}]
    await wait_for(lambda: bool(closed_at), what="the old adapter closed")
    assert closed_at[0] <= finished_at


async def test_jobs_for_a_removed_bot_are_dead_lettered_and_the_worker_goes_on(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    tree = make_config(dify, {"s": slack_bot(slack), "t": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    # A message for t waits in the durable inbox (the gateway has not started working yet)
    # when a reload removes t.
    orphan = message_for("t")
    await gateway.intake.accept([orphan])
    await gateway.apply(parse_config(make_config(dify, {"s": slack_bot(slack)}), env={}))
    await started(client, gateway, "s")
    dify.reply(ScriptedReply(chunks=["answered"]))
    event = direct("for the bot that stays")
    assert await post(client, "s", event) == 200
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert slack.final_texts("D111", event["ts"]) == ["answered"]
    assert [r["query"] for r in dify.requests] == ["for the bot that stays"]
    assert "bot t no longer exists (removed by a reload); dropped" in caplog.text
    assert metric(gateway, 'dify_gateway_dead_letters_total{bot="t"}') == 1.0
    assert not any(r.exc_info for r in caplog.records)  # no worker traceback


def message_for(bot: str) -> InboundMessage:
    return InboundMessage(
        bot=bot,
        platform="slack",
        event_id="Ev-orphan",
        message_id="D111:1.1",
        chat_id="D111",
        chat_type=ChatType.DIRECT,
        user_id="U222",
        text="for a bot about to go",
        dedupe_keys=("msg:D111:1.1",),
        reply_to={"thread_ts": "1.1"},
        received_at=time.time(),
    )


async def test_a_removed_bots_long_connection_deliveries_are_left_for_redelivery(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    tree = make_config(dify, {"s": slack_bot(slack), "t": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s", "t")
    deliver_to_t = gateway.intake.deliver_for("t")  # what t's long connection holds
    await gateway.apply(parse_config(make_config(dify, {"s": slack_bot(slack)}), env={}))
    # t's connection stays open while its last answers finish: what it still receives is
    # not acked, so the platform delivers it again (to an instance that still has t).
    verdict = await deliver_to_t(lambda: Messages((message_for("t"),)))
    assert verdict is Delivery.REDELIVER
    assert await gateway.intake.deliver_for("s")(lambda: Messages(())) is Delivery.ACK


def test_the_plan_names_each_bots_fate() -> None:
    def tree(bots: dict[str, Any], port: int = 8080) -> dict[str, Any]:
        return {
            "server": {"port": port},
            "dify": {"apps": {"main": {"api_key": "k"}}},
            "bots": {
                name: {"platform": "slack", "app": "main", "bot_token": token, "mode": "socket"}
                | {"app_token": "xapp"}
                for name, token in bots.items()
            },
        }

    old = parse_config(tree({"a": "x1", "b": "x2", "c": "x3"}), env={})
    new = parse_config(tree({"a": "x1", "b": "rotated", "d": "x4"}, port=9090), env={})
    change = plan(old, new)
    assert (change.added, change.removed, change.changed, change.kept) == (
        ["d"],
        ["c"],
        ["b"],
        ["a"],
    )
    assert change.restart_only == ["server"]
    assert change.summary() == "added: d; removed: c; restarted: b"
    assert plan(old, old).summary() == "no bot changed"


async def test_a_web_chat_added_by_a_reload_serves_its_page(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    tree = make_config(dify, {"s": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s")
    assert (await client.get("/chat/help")).status == 404
    web = {"platform": "web", "app": "main", "auth": "none"}
    await gateway.apply(
        parse_config(make_config(dify, {"s": slack_bot(slack), "help": web}), env={})
    )
    page = await client.get("/chat/help")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    await gateway.apply(parse_config(tree, env={}))
    assert (await client.get("/chat/help")).status == 404
    assert bot_state(gateway, "help") == "missing"


async def test_a_removed_bots_answer_in_flight_finishes(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    tree = make_config(dify, {"s": slack_bot(slack), "t": slack_bot(slack)})
    client, gateway = await gateway_factory(tree)
    await started(client, gateway, "s", "t")
    words = [f"w{i} " for i in range(10)]
    dify.reply(ScriptedReply(chunks=words, delay=0.1))
    slow = direct("a slow question")
    assert await post(client, "s", slow) == 200
    await wait_for(lambda: len(dify.requests) == 1, what="the answer under way")
    await gateway.apply(parse_config(make_config(dify, {"t": slack_bot(slack)}), env={}))
    assert await post(client, "s", direct("too late")) == 404
    await asyncio.wait_for(gateway.inbox.wait_idle(), 10)
    assert slack.final_texts("D111", slow["ts"]) == ["".join(words)]
    assert [r["query"] for r in dify.requests] == ["a slow question"]
