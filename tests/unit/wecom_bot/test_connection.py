"""The AI bot's long connection (`WsLink`) against the fake WeCom WebSocket server:
subscribe, heartbeat, callbacks in order, replies serialised per req_id with acks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.wecom_bot.connection import SubscribeFailed, WsLink, new_req_id
from gateway.longconn import ConnectionClosed
from gateway.platform import PlatformError
from tests.fakes.wecom_bot import FakeWecomBotServer
from tests.helpers import wait_for


@pytest.fixture
async def server() -> AsyncIterator[FakeWecomBotServer]:
    fake = FakeWecomBotServer()
    await fake.start()
    yield fake
    await fake.stop()


class Received:
    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any], str]] = []

    async def __call__(self, cmd: str, body: dict[str, Any], req_id: str) -> None:
        self.frames.append((cmd, body, req_id))


@contextlib.asynccontextmanager
async def running(link: WsLink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.session())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.aclose()


async def test_subscribes_pings_and_receives_callbacks(server: FakeWecomBotServer) -> None:
    received = Received()
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", received, ping_interval=0.05)
    async with running(link):
        await wait_for(lambda: link.ready, what="subscribed")
        assert server.of("aibot_subscribe")[0].body == {"bot_id": "BOTID", "secret": "BOTSECRET"}
        assert server.of("aibot_subscribe")[0].req_id.startswith("aibot_subscribe_")
        first = await server.push("aibot_msg_callback", {"msgid": "m1"})
        second = await server.push("aibot_event_callback", {"msgid": "m2"})
        await wait_for(lambda: len(received.frames) == 2)
        assert received.frames == [
            ("aibot_msg_callback", {"msgid": "m1"}, first),
            ("aibot_event_callback", {"msgid": "m2"}, second),
        ]
        await wait_for(lambda: len(server.of("ping")) >= 3, what="pings")
        assert link.ready  # acked pings keep it up


async def test_a_refused_subscription_fails_the_session(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "wrong", Received())
    with pytest.raises(SubscribeFailed, match="40001"):
        await link.session()
    assert not link.ready


async def test_two_missed_heartbeats_end_the_connection(server: FakeWecomBotServer) -> None:
    server.ack_pings = False
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received(), ping_interval=0.03)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(link.session(), 2.0)
    assert len(server.of("ping")) == 2 and not link.ready


async def test_a_displacement_event_ends_the_connection(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received())
    task = asyncio.create_task(link.session())
    await wait_for(lambda: link.ready)
    await server.push("aibot_event_callback", {"event": {"eventtype": "disconnected_event"}})
    with pytest.raises(ConnectionClosed, match="newer connection"):
        await asyncio.wait_for(task, 2.0)


async def test_replies_for_one_req_id_go_one_at_a_time(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received())
    async with running(link):
        await wait_for(lambda: link.ready)
        futures = [link.submit("aibot_respond_msg", "R1", {"n": n}) for n in range(5)]
        acks = await asyncio.gather(*futures)
        assert all(ack["errcode"] == 0 for ack in acks)
        assert [c.body["n"] for c in server.replies("R1")] == [0, 1, 2, 3, 4]


async def test_an_error_ack_fails_only_that_reply(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received())
    async with running(link):
        await wait_for(lambda: link.ready)
        server.reply_errcode["aibot_send_msg"] = 40008
        with pytest.raises(PlatformError) as caught:
            await link.request("aibot_send_msg", new_req_id("aibot_send_msg"), {"chatid": "c"})
        assert caught.value.code == "40008"
        ack = await link.request("aibot_respond_msg", "R2", {"ok": True})
        assert ack["errcode"] == 0


async def test_a_missing_ack_times_out(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received(), ack_timeout=0.1)
    async with running(link):
        await wait_for(lambda: link.ready)
        with pytest.raises(PlatformError, match="ack_timeout"):
            await link.request("unacked_cmd", "R3", {})  # the fake acks only aibot_* frames


async def test_replies_without_a_connection_fail_fast(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received())
    with pytest.raises(PlatformError, match="not_connected"):
        await link.request("aibot_respond_msg", "R4", {})
    await link.aclose()


async def test_a_server_close_ends_the_session(server: FakeWecomBotServer) -> None:
    link = WsLink(server.ws_url, "BOTID", "BOTSECRET", Received())
    task = asyncio.create_task(link.session())
    await wait_for(lambda: link.ready)
    await server.drop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(task, 2.0)
    assert not link.ready
