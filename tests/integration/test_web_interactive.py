"""The web chat's clicks end to end: 👍/👎, suggested questions and stop, as frames on a real
gateway's socket with the Dify emulator behind it; and the clicks that must not work (an
answer no longer known, another user's answer, a malformed click)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.runtime import Gateway
from gateway.store import keys
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory, make_config
from tests.fakes.web import frame, message, mint, until_final, web_bot

Socket = aiohttp.ClientWebSocketResponse


async def start(gateway_factory: GatewayFactory, dify: DifyEmulator) -> tuple[Any, Gateway]:
    return await gateway_factory(make_config(dify, {"web": web_bot()}))


def ws_path(sub: str = "u1") -> str:
    return f"/chat/web/ws?token={mint(sub)}"


def click(kind: str, id: str, reply_to: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"type": kind, "id": id, **extra}
    if reply_to is not None:
        body["reply_to"] = reply_to
    return json.dumps(body)


async def next_of(ws: Socket, kind: str, reply_to: str) -> dict[str, Any]:
    while True:
        data = await frame(ws)
        if data["type"] == kind and data.get("reply_to") == reply_to:
            return data


async def test_a_final_answer_offers_feedback_and_a_rating_reaches_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "how many days?"))
        final = (await until_final(ws, "m1"))[-1]
        assert final == {
            "type": "final",
            "reply_to": "m1",
            "text": "Fifteen days.",
            "feedback": True,
            "rating": None,
            "suggestions": [],
        }
        await ws.send_str(click("feedback", "c1", "m1", rating="dislike"))
        shown = await next_of(ws, "controls", "m1")
        assert shown["rating"] == "dislike" and shown["feedback"] is True
        await ws.send_str(click("feedback", "c2", "m1", rating=None))  # withdrawn
        assert (await next_of(ws, "controls", "m1"))["rating"] is None
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [
        ("dislike", "web:u1"),
        (None, "web:u1"),
    ]


async def test_a_suggested_question_is_asked_when_clicked(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = ["Who approves?", "Can I carry them over?"]
    client, _ = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "how many days?"))
        final = (await until_final(ws, "m1"))[-1]
        # The final text does not wait for the suggestions: a controls frame brings them.
        assert final["text"] == "Fifteen days." and final["suggestions"] == []
        shown = await next_of(ws, "controls", "m1")
        assert shown["suggestions"] == ["Who approves?", "Can I carry them over?"]
        assert shown["feedback"] is True and shown["rating"] is None
        dify.reply(ScriptedReply(chunks=["Your manager."]))
        await ws.send_str(click("suggestion", "c1", "m1", index=0))
        answer = (await until_final(ws, "c1"))[-1]
    assert answer["type"] == "final" and answer["text"] == "Your manager."
    asked = dify.requests[-1]
    assert asked["query"] == "Who approves?" and asked["user"] == "web:u1"
    assert asked["conversation_id"] in dify.conversations  # the same conversation goes on


async def test_stop_ends_the_answer_being_written_with_what_it_had(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=[f"w{i} " for i in range(60)], delay=0.1))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "write a lot"))
        while "w2" not in (await next_of(ws, "update", "m1"))["text"]:
            pass
        await ws.send_str(click("stop", "s1", "m1"))
        final = (await until_final(ws, "m1"))[-1]
    assert final["text"].startswith("w0 w1") and final["text"].endswith("_(stopped)_")
    assert "w59" not in final["text"]
    (stop,) = dify.stops
    assert stop["user"] == "web:u1"
    await gateway.inbox.wait_idle()


async def test_slash_stop_without_an_answer_being_written_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(click("stop", "s1"))
        (reply,) = await until_final(ws, "s1")
    assert reply["text"] == ENGLISH.nothing_to_stop and dify.stops == []


async def test_clicks_on_unknown_or_other_users_answers_have_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    async with client.ws_connect(ws_path("u1")) as ws:
        await ws.send_str(message("m1", "how many days?"))
        await until_final(ws, "m1")
    # u2 names u1's answer: it reads as u2's own m1, which does not exist.
    async with client.ws_connect(ws_path("u2")) as ws:
        await ws.send_str(click("feedback", "c1", "m1", rating="like"))
        (reply,) = await until_final(ws, "c1")
        assert reply["text"] == ENGLISH.expired
    await gateway.store.delete(keys.answer_record("web:u1:m1"))  # its TTL ran out
    async with client.ws_connect(ws_path("u1")) as ws:
        await ws.send_str(click("suggestion", "c9", "m1", index=0))
        (reply,) = await until_final(ws, "c9")
        assert reply["text"] == ENGLISH.expired
    assert dify.feedbacks == [] and len(dify.requests) == 1


async def test_a_malformed_click_gets_an_error_frame(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(click("feedback", "c1", "m1", rating="meh"))
        (error,) = await until_final(ws, "c1")
        assert error["type"] == "error" and error["message"] == ENGLISH.unreadable_message
        await ws.send_str(click("suggestion", "c2", "m1", index="first"))
        assert (await until_final(ws, "c2"))[-1]["type"] == "error"
    assert dify.requests == [] and dify.feedbacks == []


@pytest.mark.redis
async def test_clicks_on_another_instance_stop_and_rate_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    flush = aioredis.Redis.from_url(redis_url)
    await flush.flushdb()
    await flush.aclose()
    config = make_config(dify, {"web": web_bot()}, store=redis_url)
    (a, _), (b, _) = await gateway_factory(config), await gateway_factory(config)
    dify.reply(ScriptedReply(chunks=[f"w{i} " for i in range(60)], delay=0.1))
    async with a.ws_connect(ws_path()) as on_a, b.ws_connect(ws_path()) as on_b:
        await on_a.send_str(message("m1", "write a lot"))
        while "w2" not in (await next_of(on_a, "update", "m1"))["text"]:
            pass
        await on_b.send_str(click("stop", "s1", "m1"))
        final = (await until_final(on_a, "m1", within=30))[-1]
        assert final["text"].endswith("_(stopped)_") and final["feedback"] is True
        await on_b.send_str(click("feedback", "c1", "m1", rating="like"))
        assert (await next_of(on_a, "controls", "m1"))["rating"] == "like"
    assert [s["user"] for s in dify.stops] == ["web:u1"]
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [("like", "web:u1")]


# --- a human-input form, answered in words (the text fallback) -------------------------


async def test_a_form_is_shown_in_the_answer_and_the_next_message_answers_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    then = ScriptedReply(chunks=["Booked."])
    dify.reply(ScriptedReply(chunks=["Shall I book it?"], form=Form(fields=["note"], then=then)))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "book a room"))
        shown = (await until_final(ws, "m1"))[-1]["text"]
        assert "1. Approve\n2. Reject" in shown and ENGLISH.form_reply_with_text("note") in shown

        await ws.send_str(message("m2", "1 near the window"))
        assert (await until_final(ws, "m2"))[-1]["text"] == "Booked."
        (answer,) = dify.forms.answers
        assert (answer["action"], answer["inputs"]) == ("approve", {"note": "near the window"})

    # Another user of the web chat has a conversation of their own: no answer to the form.
    dify.reply(ScriptedReply(chunks=["Shall I?"], form=Form()))
    async with client.ws_connect(ws_path("u1")) as ws:
        await ws.send_str(message("m3", "book again"))
        await until_final(ws, "m3")
    dify.reply(ScriptedReply(chunks=["Your own answer."]))
    async with client.ws_connect(ws_path("u2")) as ws:
        await ws.send_str(message("m4", "1"))
        assert (await until_final(ws, "m4"))[-1]["text"] == "Your own answer."
    assert len(dify.forms.answers) == 1
