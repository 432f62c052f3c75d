"""WeCom AI bot, WebSocket (long-connection) mode, against the fake WeCom WebSocket server:
subscribe, callbacks, answers pushed as stream frames with the callback's req_id ending in
`finish: true`, welcome and feedback events, the in-flight limit, and reconnects. A message
the gateway cannot take (store down, shutting down) is told so with a finished stream: this
channel never delivers a message again."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from adapters.wecom_bot.protocol import MAX_CONTENT_BYTES
from adapters.wecom_bot.state import MAX_IN_FLIGHT
from gateway.emulator import DifyEmulator, EmulatorFile, ScriptedReply
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.words import SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory, make_config
from tests.fakes.wecom_bot import Call, FakeWecomBotServer, event_payload, text_payload
from tests.helpers import bot_state, wait_for

# The bots have no `locale`: a WeCom AI bot speaks Chinese by default.
THINKING = SIMPLIFIED_CHINESE.thinking
REFUSED = SIMPLIFIED_CHINESE.too_many_questions(MAX_IN_FLIGHT)
CONTINUED = "\n\n" + SIMPLIFIED_CHINESE.continued
UNAVAILABLE = SIMPLIFIED_CHINESE.cannot_answer_now


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> tuple[Any, Gateway]:
    bot = {
        "platform": "wecom_bot",
        "app": "main",
        "mode": "websocket",
        "bot_id": wecom.bot_id,
        "secret": wecom.secret,
        "api_base": wecom.ws_url,
    }
    client, gateway = await gateway_factory(make_config(dify, {"wecom-ws": bot}))
    await wait_for(lambda: gateway.adapters["wecom-ws"].ready, what="subscribed")
    return client, gateway


def streams(wecom: FakeWecomBotServer, req_id: str) -> list[dict[str, Any]]:
    return [c.body["stream"] for c in wecom.replies(req_id) if c.kind == "aibot_respond_msg"]


async def finished(wecom: FakeWecomBotServer, req_id: str, within: float = 8.0) -> list[Call]:
    await wait_for(
        lambda: any(s["finish"] for s in streams(wecom, req_id)), within, f"{req_id} finished"
    )
    return [c for c in wecom.replies(req_id) if c.kind == "aibot_respond_msg"]


async def test_an_answer_is_pushed_as_stream_frames_on_the_callbacks_req_id(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, _gateway = await start(gateway_factory, dify, wecom)
    assert (await client.post("/webhooks/wecom-ws", data=b"{}")).status == 404
    assert (await client.get("/readyz")).status == 200
    subscribe = wecom.of("aibot_subscribe")[0]
    assert subscribe.body == {"bot_id": "BOTID", "secret": "BOTSECRET"}

    words = [f"word{i} " for i in range(40)]
    dify.reply(ScriptedReply(chunks=words, delay=0.05))
    req_id = await wecom.push("aibot_msg_callback", text_payload("ws-1", "hello over ws"))
    calls = await finished(wecom, req_id)
    frames = [c.body["stream"] for c in calls]
    assert frames[0] == {
        "id": frames[0]["id"],
        "finish": False,
        "content": THINKING,
        "feedback": {"id": "ws-1"},
    }
    assert {f["id"] for f in frames} == {frames[0]["id"]}
    assert [f["finish"] for f in frames].count(True) == 1 and frames[-1]["finish"]
    assert frames[-1]["content"] == "".join(words)
    growing = [f["content"] for f in frames[1:-1]]
    assert len(growing) >= 2 and all(b.startswith(a) for a, b in itertools.pairwise(growing))
    # Pacing: about two frames a second per answer, never a burst.
    stamps = [c.at for c in calls]
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u - t < 1.0) <= 3
    assert len(dify.requests) == 1 and dify.requests[0]["user"] == "wecom-ws:u1"


async def test_welcome_feedback_and_the_in_flight_limit(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, _gateway = await start(gateway_factory, dify, wecom)
    dify.opening_statement = "Welcome to the IT helpdesk."
    welcome_req = await wecom.push("aibot_event_callback", event_payload("enter_chat"))
    await wait_for(lambda: bool(wecom.replies(welcome_req)), what="welcome")
    (welcome,) = wecom.replies(welcome_req)
    assert welcome.kind == "aibot_respond_welcome_msg"
    assert welcome.body == {"msgtype": "text", "text": {"content": "Welcome to the IT helpdesk."}}

    dify.responder = lambda request, turn: ScriptedReply(chunks=["fine ", "thanks"], delay=0.2)
    reqs = [
        await wecom.push("aibot_msg_callback", text_payload(f"w{n}", f"q{n}")) for n in range(4)
    ]
    await wait_for(lambda: bool(streams(wecom, reqs[3])), what="the refusal")
    assert streams(wecom, reqs[3]) == [
        {"id": streams(wecom, reqs[3])[0]["id"], "finish": True, "content": REFUSED}
    ]
    for req in reqs[:3]:
        assert (await finished(wecom, req))[-1].body["stream"]["content"] == "fine thanks"
    assert len(dify.requests) == 3

    detail = {"feedback_event": {"id": "w0", "type": 1}}
    await wecom.push("aibot_event_callback", event_payload("feedback_event", detail))
    await wait_for(lambda: bool(dify.feedbacks), what="feedback in Dify")
    assert dify.feedbacks[0]["rating"] == "like"


async def test_a_long_answer_continues_with_aibot_send_msg(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, gateway = await start(gateway_factory, dify, wecom)
    text = "".join(f"Paragraph {i}: 长长的回答 continues here.\n\n" for i in range(900))
    assert len(text.encode()) > 2 * MAX_CONTENT_BYTES
    size = len(text) // 30 + 1
    dify.reply(ScriptedReply(chunks=[text[i : i + size] for i in range(0, len(text), size)]))
    payload = text_payload("ws-long", "long", chatid="CHAT1")
    req_id = await wecom.push("aibot_msg_callback", payload)
    stream = (await finished(wecom, req_id))[-1].body["stream"]
    assert stream["content"].endswith(CONTINUED)
    assert len(stream["content"].encode()) <= MAX_CONTENT_BYTES
    await wait_for(lambda: gateway.inbox.in_flight == 0, what="answer done")
    rest = wecom.of("aibot_send_msg")
    assert len(rest) >= 2 and all(c.body["chatid"] == "CHAT1" for c in rest)
    assert all(len(c.body["markdown"]["content"].encode()) <= MAX_CONTENT_BYTES for c in rest)
    parts = [c.body["markdown"]["content"] for c in rest]
    assert stream["content"].removesuffix(CONTINUED) + "".join(parts) == text


async def test_the_bot_reconnects_after_the_server_closes_and_keeps_answering(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, gateway = await start(gateway_factory, dify, wecom)
    adapter = gateway.adapters["wecom-ws"]
    dify.responder = lambda request, turn: ScriptedReply(chunks=[f"answer to {request['query']}"])
    first = await wecom.push("aibot_msg_callback", text_payload("r1", "before"))
    assert (await finished(wecom, first))[-1].body["stream"]["content"] == "answer to before"

    await wecom.drop()
    await wait_for(lambda: not adapter.ready, what="down")
    await wait_for(lambda: wecom.connections == 2 and adapter.ready, 5, "reconnected")
    assert len(wecom.of("aibot_subscribe")) == 2
    second = await wecom.push("aibot_msg_callback", text_payload("r2", "after"))
    assert (await finished(wecom, second))[-1].body["stream"]["content"] == "answer to after"
    assert [r["query"] for r in dify.requests] == ["before", "after"]


async def test_a_refused_subscription_is_reported_and_the_instance_stays_ready(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    wecom.secret = "rotated"  # the configured secret no longer matches
    bot = {
        "platform": "wecom_bot",
        "app": "main",
        "mode": "websocket",
        "bot_id": "BOTID",
        "secret": "BOTSECRET",
        "api_base": wecom.ws_url,
    }
    client, gateway = await gateway_factory(make_config(dify, {"wecom-ws": bot}))
    await wait_for(lambda: bool(wecom.of("aibot_subscribe")), what="a subscribe attempt")
    assert not gateway.adapters["wecom-ws"].ready
    await wait_for(lambda: bot_state(gateway, "wecom-ws") == "retrying", what="retrying")
    # The instance stays ready (other bots serve); the bot is reported, with the reason.
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["bots"] == {"wecom-ws": "retrying"}
    state = gateway.bot_states.get("wecom-ws")
    assert state is not None and state.last_error is not None
    assert "40001" in state.last_error and "BOTSECRET" not in state.last_error


async def test_a_redelivered_message_is_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, _gateway = await start(gateway_factory, dify, wecom)
    dify.reply(ScriptedReply(chunks=["just ", "once"], delay=0.05))
    first = await wecom.push("aibot_msg_callback", text_payload("dup-1", "hi"))
    again = await wecom.push("aibot_msg_callback", text_payload("dup-1", "hi"))
    assert (await finished(wecom, first))[-1].body["stream"]["content"] == "just once"
    assert wecom.replies(again) == [] and len(dify.requests) == 1


async def _on_store(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    wecom: FakeWecomBotServer,
    store: MemoryStore,
) -> tuple[Any, Gateway]:
    bot = {
        "platform": "wecom_bot",
        "app": "main",
        "mode": "websocket",
        "bot_id": wecom.bot_id,
        "secret": wecom.secret,
        "api_base": wecom.ws_url,
    }
    client, gateway = await gateway_factory(make_config(dify, {"wecom-ws": bot}), store=store)
    await wait_for(lambda: gateway.adapters["wecom-ws"].ready, what="subscribed")
    return client, gateway


async def test_a_message_the_store_cannot_take_is_told_so_and_not_answered(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    wecom: FakeWecomBotServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    await _on_store(gateway_factory, dify, wecom, store)
    real_claim = store.claim

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis is down")

    monkeypatch.setattr(store, "claim", down)
    # WeCom's long connection never delivers a message again: the user is told at once.
    lost = await wecom.push("aibot_msg_callback", text_payload("out-1", "hi"))
    (sorry,) = [c.body["stream"] for c in await finished(wecom, lost)]
    assert sorry["finish"] and sorry["content"] == UNAVAILABLE
    assert dify.requests == []

    monkeypatch.setattr(store, "claim", real_claim)
    dify.reply(ScriptedReply(chunks=["back again"]))
    again = await wecom.push("aibot_msg_callback", text_payload("out-1", "hi"))  # sent again
    assert (await finished(wecom, again))[-1].body["stream"]["content"] == "back again"
    assert len(dify.requests) == 1


async def test_during_shutdown_a_message_is_not_taken(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    store = MemoryStore()
    client, gateway = await _on_store(gateway_factory, dify, wecom, store)
    gateway.begin_shutdown()
    drained = await wecom.push("aibot_msg_callback", text_payload("drain-1", "hi"))
    # No thinking frame and no answer: only the finished "try again" stream.
    (sorry,) = [c.body["stream"] for c in await finished(wecom, drained)]
    assert sorry["finish"] and sorry["content"] == UNAVAILABLE
    assert dify.requests == []

    await client.close()  # the old instance finishes shutting down
    await _on_store(gateway_factory, dify, wecom, store)  # a fresh one, same store
    dify.reply(ScriptedReply(chunks=["answered after all"]))
    again = await wecom.push("aibot_msg_callback", text_payload("drain-1", "hi"))
    frames = [c.body["stream"] for c in await finished(wecom, again)]
    # Nothing was claimed during the drain: the same msgid is new to the fresh instance.
    assert frames[0]["content"] == THINKING and frames[-1]["content"] == "answered after all"
    assert len(dify.requests) == 1


# --- the app's files ---------------------------------------------------------------------------


async def test_files_are_uploaded_in_chunks_and_sent_after_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    """Images ride on the final stream reply; any other file is uploaded over the socket
    (several 512 KB chunks for a big one) and sent as a file message after the text; a file
    WeCom cannot take (5 bytes or fewer) is named in the text."""
    _client, gateway = await start(gateway_factory, dify, wecom)
    png = b"\x89PNG\r\n\x1a\n" + b"chart" * 20
    report = b"%PDF-1.7 " + bytes(range(256)) * 2400  # about 600 KB: two chunks
    files = [
        EmulatorFile("chart.png", png, "image/png"),
        EmulatorFile("report.pdf", report, "application/pdf", type="document"),
        EmulatorFile("tiny.txt", b"abc", "text/plain", type="document"),
    ]
    dify.reply(ScriptedReply(chunks=["图表如下。"], files=files))
    req_id = await wecom.push("aibot_msg_callback", text_payload("ws-files", "画个图", chatid="C9"))
    final = (await finished(wecom, req_id))[-1].body["stream"]
    assert final["content"] == "图表如下。\n\n" + SIMPLIFIED_CHINESE.file_missing("tiny.txt")
    assert len(final["msg_item"]) == 1  # the image
    await wait_for(lambda: gateway.inbox.in_flight == 0, what="answer done")
    chunks = wecom.of("aibot_upload_media_chunk")
    assert len(chunks) == 2
    (init,) = wecom.of("aibot_upload_media_init")
    assert init.body["type"] == "file" and init.body["total_chunks"] == 2
    ((media_id, stored),) = wecom.files.items()
    assert stored == ("file", "report.pdf", report)
    (sent,) = wecom.of("aibot_send_msg")
    assert sent.body == {"chatid": "C9", "msgtype": "file", "file": {"media_id": media_id}}
    # The file message comes after the finished stream.
    finish_at = max(c.at for c in wecom.replies(req_id) if c.body["stream"]["finish"])
    assert sent.at >= finish_at


async def test_a_file_whose_upload_fails_is_named_instead(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, gateway = await start(gateway_factory, dify, wecom)
    wecom.reply_errcode["aibot_upload_media_init"] = 40058
    report = EmulatorFile("report.pdf", b"%PDF-1.7 report", "application/pdf", type="document")
    dify.reply(ScriptedReply(chunks=["报告。"], files=[report]))
    req_id = await wecom.push("aibot_msg_callback", text_payload("ws-fail", "报告"))
    final = (await finished(wecom, req_id))[-1].body["stream"]
    assert final["content"] == "报告。\n\n" + SIMPLIFIED_CHINESE.file_missing("report.pdf")
    await wait_for(lambda: gateway.inbox.in_flight == 0, what="answer done")
    assert wecom.files == {} and wecom.of("aibot_send_msg") == []
