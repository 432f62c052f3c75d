"""The Stream-mode client against the fake Stream server: connect, ack, reconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from adapters.dingtalk import connection as stream_module
from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.connection import StreamClient
from adapters.dingtalk.frames import StreamFrame
from gateway.platform import Delivery
from tests.fakes.dingtalk import FakeDingtalk
from tests.helpers import wait_for


class Inbox:
    def __init__(self) -> None:
        self.frames: list[StreamFrame] = []
        self.accept = True

    async def __call__(self, frame: StreamFrame) -> Delivery:
        self.frames.append(frame)
        return Delivery.ACK if self.accept else Delivery.REDELIVER


@pytest.fixture
async def client(api: DingtalkApi) -> AsyncIterator[tuple[StreamClient, Inbox]]:
    inbox = Inbox()
    stream = StreamClient("ding", api, inbox)
    stream.start()
    yield stream, inbox
    await stream.aclose()


async def connected(fake: FakeDingtalk, stream: StreamClient, sessions: int = 1) -> None:
    await wait_for(lambda: fake.connected and stream.sessions >= sessions, what="a connection")


async def test_connects_with_subscriptions_and_ticket(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, _ = client
    await connected(fake, stream)
    assert stream.connected
    body = fake.sent("/v1.0/gateway/connections/open")[0].body
    assert body["subscriptions"] == [
        {"type": "EVENT", "topic": "*"},
        {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"},
        # Clicks on card buttons (a template with buttons; none come otherwise).
        {"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"},
    ]
    assert fake.connections == 1  # the ticket (with + / =) arrived intact


async def test_ping_is_acked_with_its_data(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, _ = client
    await connected(fake, stream)
    ping = await fake.push_ping()
    await wait_for(lambda: fake.ack_for(ping) is not None, what="the ping ack")
    ack = fake.ack_for(ping)
    assert ack is not None
    assert ack["code"] == 200
    assert json.loads(ack["data"])["opaque"]


async def test_robot_message_is_handed_over_then_acked(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    frame_id = await fake.push_callback({"msgId": "m1", "text": {"content": "hi"}})
    await wait_for(lambda: fake.ack_for(frame_id) is not None, what="the callback ack")
    assert [f.message_id for f in inbox.frames] == [frame_id]
    assert inbox.frames[0].payload()["msgId"] == "m1"
    ack = fake.ack_for(frame_id)
    assert ack is not None
    assert (ack["code"], json.loads(ack["data"])) == (200, {"response": None})


async def test_card_clicks_go_to_their_own_handler(fake: FakeDingtalk, api: DingtalkApi) -> None:
    messages, clicks = Inbox(), Inbox()
    stream = StreamClient("ding", api, messages, clicks)
    stream.start()
    try:
        await connected(fake, stream)
        frame_id = await fake.push_card_click("dgw1", "like")
        await wait_for(lambda: fake.ack_for(frame_id) is not None, what="the click ack")
        assert [f.message_id for f in clicks.frames] == [frame_id] and messages.frames == []
        ack = fake.ack_for(frame_id)
        assert ack is not None
        assert (ack["code"], json.loads(ack["data"])) == (200, {"response": {}})
        clicks.accept = False
        refused = await fake.push_card_click("dgw1", "dislike")
        ping = await fake.push_ping()
        await wait_for(lambda: fake.ack_for(ping) is not None)
        assert fake.ack_for(refused) is None  # left for DingTalk to deliver again
    finally:
        await stream.aclose()


async def test_card_clicks_without_a_handler_are_acked_and_dropped(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    frame_id = await fake.push_card_click("dgw1", "like")
    await wait_for(lambda: fake.ack_for(frame_id) is not None, what="the click ack")
    assert inbox.frames == []


async def test_refused_message_is_not_acked(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    inbox.accept = False
    refused = await fake.push_callback({"msgId": "m1"})
    ping = await fake.push_ping()  # frames are handled in order: once this is acked...
    await wait_for(lambda: fake.ack_for(ping) is not None)
    assert fake.ack_for(refused) is None  # ...the refused one was definitely left unacked


async def test_other_frames_are_acked_and_garbage_is_survived(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    assert fake._ws is not None
    await fake._ws.send_str("not json")
    await fake._ws.send_bytes(b"\xff\xfe")
    await fake.push(
        {"type": "EVENT", "headers": {"messageId": "ev1", "topic": "*"}, "data": '{"a":1}'}
    )
    await wait_for(lambda: fake.ack_for("ev1") is not None)
    assert inbox.frames == []
    assert fake.connections == 1


async def test_disconnect_reconnects_at_once(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    disconnect = await fake.push_disconnect()
    # The server keeps the old socket open: the client must go by itself.
    await connected(fake, stream, sessions=2)
    assert fake.ack_for(disconnect) is not None
    assert len(fake.sent("/v1.0/gateway/connections/open")) == 2
    frame_id = await fake.push_callback({"msgId": "after"})
    await wait_for(lambda: fake.ack_for(frame_id) is not None)
    assert inbox.frames[-1].payload() == {"msgId": "after"}


async def test_dropped_socket_reconnects(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, inbox = client
    await connected(fake, stream)
    fake.drop()
    await wait_for(lambda: not stream.connected, what="noticing the drop")
    await connected(fake, stream, sessions=2)
    frame_id = await fake.push_callback({"msgId": "after-drop"})
    await wait_for(lambda: fake.ack_for(frame_id) is not None)
    assert inbox.frames[-1].payload() == {"msgId": "after-drop"}


async def test_silent_socket_is_replaced(
    fake: FakeDingtalk, api: DingtalkApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "IDLE_TIMEOUT", 0.3)
    stream = StreamClient("ding", api, Inbox())
    stream.start()
    try:
        await connected(fake, stream)
        await connected(fake, stream, sessions=2)  # nothing arrived: the watchdog fired
    finally:
        await stream.aclose()


async def test_failed_open_backs_off_and_retries(
    fake: FakeDingtalk, client: tuple[StreamClient, Inbox]
) -> None:
    stream, _ = client
    await connected(fake, stream)
    fake.fail("/v1.0/gateway/connections/open", 500, {"code": "systemError"})
    fake.drop()
    await connected(fake, stream, sessions=2)
    assert len(fake.sent("/v1.0/gateway/connections/open")) == 3
    assert stream.connected
