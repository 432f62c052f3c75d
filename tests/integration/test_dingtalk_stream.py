"""DingTalk Stream mode end to end: the gateway keeps a WebSocket to the fake Stream server,
acks every frame, answers robot messages, and keeps answering after DingTalk asks it to
reconnect or the socket drops (the "silent after ~12 h" failure). Frames it cannot take (store
down, shutting down) stay unacked, so DingTalk delivers them again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.dingtalk.adapter import DingtalkAdapter
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.store.base import Store, StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.conftest import GatewayFactory, make_config
from tests.fakes.dingtalk import FakeDingtalk, dingtalk_bot, robot_message
from tests.helpers import wait_for

TEMPLATE = "382e4302-551d-4880-bf29-a30acfab2e71.schema"


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    ding: FakeDingtalk,
    store: Store | None = None,
    **bot: Any,
) -> tuple[Any, Gateway]:
    dify.responder = lambda request, turn: ScriptedReply(chunks=[f"Answer {turn}."])
    config = make_config(dify, {"ding": dingtalk_bot(ding, **bot)})
    client, gateway = await gateway_factory(config, store=store)
    await wait_for(lambda: gateway.adapters["ding"].ready and ding.connected, what="connected")
    return client, gateway


async def answered(gateway: Gateway, count: int, dify: DifyEmulator) -> None:
    await wait_for(lambda: len(dify.requests) >= count, what=f"{count} Dify requests")
    await wait_for(
        lambda: gateway.inbox.in_flight == 0 and gateway.inbox.queued == 0,
        within=10,
        what="answers to finish",
    )


async def ask(ding: FakeDingtalk, text: str, **kw: Any) -> str:
    frame_id = await ding.push_callback(robot_message(ding, text, **kw))
    await wait_for(lambda: ding.ack_for(frame_id) is not None, what=f"the ack of {text!r}")
    return frame_id


async def test_callback_is_acked_and_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    frame_id = await ask(ding, "hello over the stream")
    await answered(gateway, 1, dify)
    ack = ding.ack_for(frame_id)
    assert ack is not None
    assert ack["code"] == 200 and ack["headers"]["messageId"] == frame_id
    assert json.loads(ack["data"]) == {"response": None}
    assert dify.requests[0]["query"] == "hello over the stream"
    assert dify.requests[0]["user"] == "ding:manager123"
    assert ding.texts() == ["Answer 1."]
    # Stream mode serves no webhook, and the gateway reports the bot ready.
    assert (await client.post("/webhooks/ding", data=b"{}")).status == 404
    assert (await client.get("/readyz")).status == 200


async def test_ping_is_echoed(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    await start(gateway_factory, dify, ding)
    ping = await ding.push_ping()
    await wait_for(lambda: ding.ack_for(ping) is not None)
    ack = ding.ack_for(ping)
    assert ack is not None and ack["code"] == 200 and json.loads(ack["data"])["opaque"]


async def test_redelivered_frame_and_message_are_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    _, gateway = await start(gateway_factory, dify, ding)
    payload = robot_message(ding, "only once")
    first = await ding.push_callback(payload, message_id="frame-A")
    again = await ding.push_callback(payload, message_id="frame-A")  # same frame redelivered
    other = await ding.push_callback(payload, message_id="frame-B")  # same msgId, new frame
    await wait_for(lambda: all(ding.ack_for(f) for f in (first, again, other)))
    await answered(gateway, 1, dify)
    assert len([a for a in ding.acks if a["headers"]["messageId"] == "frame-A"]) == 2
    assert [r["query"] for r in dify.requests] == ["only once"]
    assert ding.texts() == ["Answer 1."]


async def test_group_message_without_mention_is_acked_not_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    _, gateway = await start(gateway_factory, dify, ding)
    await ask(ding, "chatter", group=True, mentioned=False)
    await ask(ding, "sentinel")
    await answered(gateway, 1, dify)
    assert [r["query"] for r in dify.requests] == ["sentinel"]


async def test_keeps_answering_after_disconnect_and_after_a_dropped_socket(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    _, gateway = await start(gateway_factory, dify, ding)
    adapter = gateway.adapters["ding"]
    await ask(ding, "before")
    await answered(gateway, 1, dify)

    # DingTalk's ~12-hourly "persistent connection is timeout": ack, reconnect at once.
    disconnect = await ding.push_disconnect()
    await wait_for(lambda: ding.connections == 2 and ding.connected, what="a new connection")
    assert ding.ack_for(disconnect) is not None
    await ask(ding, "after disconnect")
    await answered(gateway, 2, dify)

    # The network drops the socket with no close frame: back off briefly and reconnect.
    ding.drop()
    await wait_for(lambda: not adapter.ready, what="noticing the drop")
    await wait_for(lambda: ding.connections == 3 and adapter.ready, what="a third connection")
    await ask(ding, "after drop")
    await answered(gateway, 3, dify)

    assert [r["query"] for r in dify.requests] == ["before", "after disconnect", "after drop"]
    assert ding.texts() == ["Answer 1.", "Answer 2.", "Answer 3."]  # one conversation
    assert len(ding.sent("/v1.0/gateway/connections/open")) == 3


async def test_unavailable_store_leaves_the_frame_unacked_for_redelivery(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    ding: FakeDingtalk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, gateway = await start(gateway_factory, dify, ding)
    store = gateway.store
    real_accept = store.accept

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis is down")

    monkeypatch.setattr(store, "accept", down)
    payload = robot_message(ding, "survive the outage")
    lost = await ding.push_callback(payload, message_id="frame-X")
    ping = await ding.push_ping()  # frames are handled in order
    await wait_for(lambda: ding.ack_for(ping) is not None)
    assert ding.ack_for(lost) is None
    assert dify.requests == []

    monkeypatch.setattr(store, "accept", real_accept)
    await ding.push_callback(payload, message_id="frame-X")  # DingTalk delivers it again
    await wait_for(lambda: ding.ack_for("frame-X") is not None)
    await answered(gateway, 1, dify)
    assert [r["query"] for r in dify.requests] == ["survive the outage"]


async def test_during_shutdown_a_frame_is_left_for_the_next_instance(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    store = MemoryStore()
    client, gateway = await start(gateway_factory, dify, ding, store=store)
    gateway.begin_shutdown()
    payload = robot_message(ding, "asked during the drain")
    drained = await ding.push_callback(payload, message_id="frame-D")
    ping = await ding.push_ping()  # frames are handled in order
    await wait_for(lambda: ding.ack_for(ping) is not None)
    assert ding.ack_for(drained) is None  # not acked: DingTalk delivers it again
    assert dify.requests == [] and ding.texts() == []  # not answered

    await client.close()  # the old instance finishes shutting down
    await wait_for(lambda: not ding.connected, what="the old socket to close")
    _, fresh = await start(gateway_factory, dify, ding, store=store)  # same store
    await ding.push_callback(payload, message_id="frame-D")  # DingTalk delivers it again
    await wait_for(lambda: ding.ack_for("frame-D") is not None)
    await answered(fresh, 1, dify)
    # Nothing was claimed during the drain: the redelivery is new to the store.
    assert [r["query"] for r in dify.requests] == ["asked during the drain"]
    assert ding.texts() == ["Answer 1."]


async def test_card_reply_over_stream_mode(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    _, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    text = "An AI card answer arriving in pieces. " * 5
    dify.reply(ScriptedReply(chunks=[text[i : i + 20] for i in range(0, len(text), 20)], delay=0.1))
    await ask(ding, "card please", group=True)
    await answered(gateway, 1, dify)
    (card,) = ding.cards.values()
    assert card.space == "dtv1.card//IM_GROUP.cidGroup0001=="
    assert card.content == text and card.flow[-1] == "3"


async def test_close_stops_the_connection(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    _, gateway = await start(gateway_factory, dify, ding)
    adapter = gateway.adapters["ding"]
    assert isinstance(adapter, DingtalkAdapter)
    await adapter.aclose()
    await wait_for(lambda: not ding.connected, what="the socket to close")
    assert not adapter.ready
