"""Feishu long connection (`mode: websocket`) against a fake frame server: pings with the
server's interval, single and multi-part events acked with `{"code":200}` and `biz_rt`,
answers delivered, duplicates not answered twice, and reconnects after the server closes.
Events the gateway cannot take (store down, shutting down) are answered 500, to be re-pushed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.feishu.frames import CONTROL, DATA
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import FakeFeishu, message_event
from tests.helpers import wait_for
from tests.integration.test_feishu_e2e import feishu_ws_bot

BOT = "fs-ws"


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    fake = FakeFeishu(
        client_config={
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": 120,
        }
    )
    fake.pong_config = {"PingInterval": 1}  # the pong shortens the interval
    await fake.start()
    yield fake
    await fake.stop()


def _answered(feishu: FakeFeishu, event: dict[str, Any]) -> bool:
    replies = feishu.replies_to(event["event"]["message"]["message_id"])
    return any(
        (card := feishu.card_of(m.message_id)) is not None and not card.streaming for m in replies
    )


async def test_long_connection_acks_answers_and_reconnects(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Answer to ", request["query"]])
    bot = feishu_ws_bot(feishu)
    client, gateway = await gateway_factory(make_config(dify, {BOT: bot}))
    adapter = gateway.adapters[BOT]
    await wait_for(lambda: adapter.ready, what="long connection up")
    # A long-connection bot serves no webhook.
    assert (await client.post(f"/webhooks/{BOT}", data=b"{}")).status == 404
    endpoint = feishu.calls_to("POST", "/callback/ws/endpoint")[0]
    assert endpoint.body == {"AppID": feishu.app_id, "AppSecret": feishu.app_secret}

    # A ping as soon as the connection is up, on the service from the URL.
    await wait_for(lambda: bool(feishu.ws_frames), what="first ping")
    ping = feishu.ws_frames[0]
    assert (ping.method, ping.service, ping.header("type")) == (CONTROL, 77, "ping")

    async def ask(text: str, *, parts: int = 1, **kwargs: Any) -> tuple[dict[str, Any], str]:
        event = message_event(text, **kwargs)
        frame_id = await feishu.push_event(event, parts=parts)
        await wait_for(lambda: frame_id in feishu.acks, what=f"ack of {text!r}")
        return event, frame_id

    event, frame_id = await ask("single frame")
    ack = feishu.acks[frame_id]
    assert json.loads(ack.payload) == {"code": 200}
    assert ack.method == DATA and ack.service == 77 and ack.seq_id == 1 and ack.log_id == 42
    assert ack.header("biz_rt") is not None and int(ack.header("biz_rt") or "x") >= 0
    assert ack.header("message_id") == frame_id and ack.header("type") == "event"
    await wait_for(lambda: _answered(feishu, event), what="answer 1")

    # A payload in three parts is reassembled, acked once, answered once.
    big = "multi-part " + "x" * 3000
    event, frame_id = await ask(big, parts=3)
    assert sum(1 for f in feishu.ws_frames if f.header("message_id") == frame_id) == 1
    await wait_for(lambda: _answered(feishu, event), what="answer 2")
    assert dify.requests[-1]["query"] == big

    # Feishu re-pushes an event it thinks was lost: acked again, not answered again.
    repeat = await feishu.push_event(event)
    await wait_for(lambda: repeat in feishu.acks, what="ack of the re-push")
    assert len(feishu.replies_to(event["event"]["message"]["message_id"])) == 1

    # The server closes the connection: the bot reconnects (the fake asks for no delay)
    # with a fresh endpoint, and keeps answering.
    await feishu.close_connections()
    await wait_for(lambda: feishu.ws_connects == 2 and adapter.ready, what="reconnect")
    assert len(feishu.calls_to("POST", "/callback/ws/endpoint")) == 2
    event, _ = await ask("after the reconnect")
    await wait_for(lambda: _answered(feishu, event), what="answer 3")

    # The pong's ClientConfig took effect: pings now come every second.
    pings_before = sum(1 for f in feishu.ws_frames if f.header("type") == "ping")
    await wait_for(
        lambda: sum(1 for f in feishu.ws_frames if f.header("type") == "ping") >= pings_before + 1,
        within=2.5,
        what="a ping at the shortened interval",
    )
    assert [r["query"] for r in dify.requests] == ["single frame", big, "after the reconnect"]


async def _ws_gateway(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu, store: MemoryStore
) -> tuple[TestClient[Any, Any], Gateway]:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Answer to ", request["query"]])
    bot = feishu_ws_bot(feishu)
    client, gateway = await gateway_factory(make_config(dify, {BOT: bot}), store=store)
    await wait_for(lambda: gateway.adapters[BOT].ready, what="long connection up")
    return client, gateway


async def _answer_code(feishu: FakeFeishu, frame_id: str) -> int:
    await wait_for(lambda: frame_id in feishu.acks, what="the answer to the frame")
    code: int = json.loads(feishu.acks.pop(frame_id).payload)["code"]
    return code


async def test_an_event_the_store_cannot_take_is_answered_500(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    feishu: FakeFeishu,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    await _ws_gateway(gateway_factory, dify, feishu, store)
    real_accept = store.accept

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis is down")

    monkeypatch.setattr(store, "accept", down)
    event = message_event("survive the outage")
    assert await _answer_code(feishu, await feishu.push_event(event)) == 500  # re-push it
    assert dify.requests == []

    monkeypatch.setattr(store, "accept", real_accept)
    assert await _answer_code(feishu, await feishu.push_event(event)) == 200  # the re-push
    await wait_for(lambda: _answered(feishu, event), what="the answer")
    assert [r["query"] for r in dify.requests] == ["survive the outage"]


async def test_during_shutdown_an_event_is_left_for_the_next_instance(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    store = MemoryStore()
    client, gateway = await _ws_gateway(gateway_factory, dify, feishu, store)
    gateway.begin_shutdown()
    event = message_event("asked during the drain")
    assert await _answer_code(feishu, await feishu.push_event(event)) == 500  # re-push it
    assert dify.requests == []
    assert feishu.replies_to(event["event"]["message"]["message_id"]) == []  # not answered

    await client.close()  # the old instance finishes shutting down
    await _ws_gateway(gateway_factory, dify, feishu, store)  # a fresh one, same store
    assert await _answer_code(feishu, await feishu.push_event(event)) == 200  # the re-push
    await wait_for(lambda: _answered(feishu, event), what="the answer")
    # Nothing was claimed during the drain: the re-push is new to the store.
    assert [r["query"] for r in dify.requests] == ["asked during the drain"]
