"""The web chat end to end: a real gateway serving the page and the WebSocket, the Dify
emulator behind it, and aiohttp's WebSocket client (or a raw TCP one) as the page."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
from typing import Any

import aiohttp
import pytest

from gateway.emulator import DifyEmulator, EmulatorFile, ScriptedReply, Thought
from gateway.runtime import Gateway
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory, make_config
from tests.fakes.web import closed_with, frame, message, mint, until_final, web_bot
from tests.helpers import wait_for

WORDS = [f"w{n} " for n in range(12)]
ANSWER = "".join(WORDS)


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, **bot: Any
) -> tuple[Any, Gateway]:
    server = bot.pop("server", None)
    routes = bot.pop("routes", None)
    config = make_config(dify, {"web": web_bot(**bot)}, server=server, routes=routes)
    return await gateway_factory(config)


# The final frame as it is without 👍/👎 (tests/integration/test_web_interactive.py has them).
NO_FEEDBACK = [{"match": {}, "feedback": False}]


def ws_path(sub: str = "u1", **token: Any) -> str:
    return f"/chat/web/ws?token={mint(sub, **token)}"


# --- the page ------------------------------------------------------------------------------


async def test_the_page_is_one_self_contained_document_in_the_bots_language(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await gateway_factory(
        make_config(dify, {"web": web_bot(), "web-zh": web_bot(locale="zh-CN")})
    )
    response = await client.get("/chat/web")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    page = await response.text()
    assert '<html lang="en">' in page and "Ask anything" in page
    # Nothing loaded from elsewhere (no CDN, works offline): no URL at all in the page.
    assert "http://" not in page and "https://" not in page and '<link rel="stylesheet' not in page
    chinese = await (await client.get("/chat/web-zh")).text()
    assert '<html lang="zh-CN">' in chinese and "有什么问题" in chinese
    assert (await client.get("/chat/nobody")).status == 404
    assert (await client.post("/chat/web")).status == 405


# --- who is talking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=",
        "?token=not.a.token",
        f"?token={mint(secret='a-forged-secret-of-enough-length')}",
        f"?token={mint(ttl=-3600)}",
        f"?token={mint(alg='none')}",
        f"?token={mint(alg='HS512')}",
    ],
    ids=["missing", "empty", "garbage", "forged", "expired", "alg-none", "wrong-alg"],
)
async def test_a_bad_token_is_refused_with_401_before_the_upgrade(
    gateway_factory: GatewayFactory, dify: DifyEmulator, query: str
) -> None:
    client, _ = await start(gateway_factory, dify)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(f"/chat/web/ws{query}")
    assert info.value.status == 401
    plain = await client.get(f"/chat/web/ws{query}")  # how the page asks why it failed
    assert plain.status == 401
    assert dify.requests == []


async def test_a_good_token_without_an_upgrade_is_told_to_upgrade(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    response = await client.get(ws_path())
    assert response.status == 426


async def test_auth_none_takes_the_pages_own_id(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify, auth="none", signing_secret=None)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/chat/web/ws")
    assert info.value.status == 401
    async with client.ws_connect("/chat/web/ws?user=browser-1234") as ws:
        await ws.send_str(message("m1", "hello"))
        frames = await until_final(ws, "m1")
    assert frames[-1]["type"] == "final"
    assert dify.requests[0]["user"] == "web:browser-1234"


# --- frames --------------------------------------------------------------------------------


async def test_an_answer_streams_as_updates_of_the_whole_text_then_a_final(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify, routes=NO_FEEDBACK)
    dify.reply(ScriptedReply(chunks=WORDS, delay=0.06))
    async with client.ws_connect(ws_path("alice", name="Alice")) as ws:
        await ws.send_str(message("m1", "What can you do?"))
        frames = await until_final(ws, "m1")
    updates = [f for f in frames if f["type"] == "update"]
    assert updates[0] == {"type": "update", "reply_to": "m1", "text": "", "status": ""}
    partial = [f["text"] for f in updates if f["text"]]
    assert len(set(partial)) >= 2  # the answer grows on screen
    assert all("".join(WORDS).startswith(text) for text in partial)
    assert frames[-1] == {"type": "final", "reply_to": "m1", "text": ANSWER}
    assert dify.requests[0]["user"] == "web:alice"
    assert dify.requests[0]["query"] == "What can you do?"


async def test_the_status_shows_while_an_agent_works_and_the_final_carries_the_footer(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    """As on the other platforms: the tool in use on the update frames, none on the final,
    whose text ends with the sources and the tools-used line; the final also lists the
    sources as data, for a front end that shows them its own way."""
    labels = {"web_search": {"en_US": "Web Search"}}
    config = make_config(
        dify,
        {"web": web_bot()},
        apps={"main": {"mode": "agent"}},
        routes=[{"match": {}, "show_tools": True, "feedback": False}],
    )
    client, _ = await gateway_factory(config)
    dify.reply(
        ScriptedReply(
            chunks=["It is ", "sunny."],
            app="agent",
            thoughts=[Thought("web_search", labels, seconds=1.0)],
            citations=["Forecast.pdf", "Forecast.pdf", "Almanac"],
        )
    )
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "Weather?"))
        frames = await until_final(ws, "m1")
    updates = [f for f in frames if f["type"] == "update"]
    assert {"type": "update", "reply_to": "m1", "text": "", "status": "Using Web Search…"} in (
        updates
    )
    assert all("Used:" not in f["text"] and "Sources" not in f["text"] for f in updates)
    assert frames[-1] == {
        "type": "final",
        "reply_to": "m1",
        "text": "It is sunny.\n\n---\n**Sources**\n1. Forecast.pdf\n2. Almanac"
        "\n\n*Used: Web Search*",
        "sources": ["Forecast.pdf", "Almanac"],
    }


async def test_sources_can_be_switched_off_on_the_web_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    config = make_config(
        dify, {"web": web_bot()}, routes=[{"match": {}, "citations": False, "feedback": False}]
    )
    client, _ = await gateway_factory(config)
    dify.reply(ScriptedReply(chunks=["Fifteen days."], citations=["Handbook.pdf"]))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "How long?"))
        frames = await until_final(ws, "m1")
    assert frames[-1] == {"type": "final", "reply_to": "m1", "text": "Fifteen days."}


async def test_the_apps_files_are_named_in_the_final_never_linked_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    """The frames carry no files: the app's files are named (Dify's signed links expire and
    may be internal, so they never reach the page)."""
    client, _ = await start(gateway_factory, dify)
    chart = EmulatorFile("chart.png", b"\x89PNG\r\n\x1a\n" + b"c" * 40, "image/png")
    dify.reply(ScriptedReply(chunks=["Here you are."], files=[chart]))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "A chart?"))
        frames = await until_final(ws, "m1")
    final = frames[-1]
    assert final["type"] == "final"
    assert final["text"] == "Here you are.\n\n" + ENGLISH.file_missing("chart.png")
    assert not any("/files/" in f.get("text", "") for f in frames)


async def test_a_resent_message_is_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=WORDS, delay=0.05))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "once"))
        await ws.send_str(message("m1", "once"))  # the page resends after a reconnect
        frames = await until_final(ws, "m1")
        await ws.send_str(message("m1", "once"))  # and again, after the answer
        await gateway.inbox.wait_idle()
        with pytest.raises(asyncio.TimeoutError):
            await frame(ws, within=0.5)
    assert len(dify.requests) == 1
    assert [f["type"] for f in frames].count("final") == 1


async def test_reset_and_help_go_through_the_common_commands(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "first"))
        await until_final(ws, "m1")
        await ws.send_str(message("m2", "second"))
        await until_final(ws, "m2")
        await ws.send_str(message("m3", "/reset"))
        assert (await until_final(ws, "m3"))[-1]["text"] == ENGLISH.new_conversation
        await ws.send_str(message("m4", "/help"))
        assert (await until_final(ws, "m4"))[-1]["text"] == ENGLISH.help
        await ws.send_str(message("m5", "after the reset"))
        await until_final(ws, "m5")
    first, second, third = dify.requests
    assert not first.get("conversation_id")
    assert second["conversation_id"] in dify.conversations  # the conversation goes on
    assert not third.get("conversation_id")  # after /reset, a new one


async def test_a_user_who_reconnects_mid_answer_gets_the_rest_unasked(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=WORDS, delay=0.12))
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "tell me"))
        while not (await frame(ws))["text"]:
            pass  # until the first words are on screen
    await asyncio.sleep(0.3)  # offline for a moment while the answer goes on
    async with client.ws_connect(ws_path()) as ws:
        frames = await until_final(ws, "m1")  # nothing sent: the gateway knows what it owes
    assert frames[-1]["text"] == ANSWER
    # Someone else connecting is owed nothing.
    async with client.ws_connect(ws_path("bob")) as other:
        with pytest.raises(asyncio.TimeoutError):
            await frame(other, within=0.5)
    assert len(dify.requests) == 1


async def test_a_frame_over_the_size_limit_closes_1009_and_the_gateway_serves_on(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify, server={"max_body_bytes": 4096})
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("big", "x" * 5000))
        assert await closed_with(ws) == 1009
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("small", "fine"))
        assert (await until_final(ws, "small"))[-1]["type"] == "final"
    assert [r["query"] for r in dify.requests] == ["fine"]


async def test_messages_past_the_rate_limit_get_an_error_frame(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify, messages_per_minute=2)
    async with client.ws_connect(ws_path()) as ws:
        for n in range(3):
            await ws.send_str(message(f"m{n}", f"question {n}"))
        error = (await until_final(ws, "m2"))[-1]
        assert error == {"type": "error", "reply_to": "m2", "message": ENGLISH.too_many_messages(2)}
        await until_final(ws, "m0")
        await until_final(ws, "m1")
    assert len(dify.requests) == 2


async def test_bad_frames_count_against_the_rate_limit_and_log_no_line_past_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = await start(gateway_factory, dify, messages_per_minute=2)
    with caplog.at_level(logging.INFO, logger="adapters.web.session"):
        async with client.ws_connect(ws_path()) as ws:
            for n in range(5):
                await ws.send_str(message(f"b{n}", ""))  # no text, no files: a bad frame
            answers = [await frame(ws) for _ in range(5)]
    assert [a["message"] for a in answers] == [ENGLISH.unreadable_message] * 2 + [
        ENGLISH.too_many_messages(2)
    ] * 3
    assert [a["reply_to"] for a in answers] == [f"b{n}" for n in range(5)]
    logged = [r for r in caplog.records if "bad frame" in r.getMessage()]
    assert len(logged) == 2 and not any(r.exc_info for r in logged)


async def test_frames_that_are_not_the_protocol(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str('{"type": "message", "text": "no id"}')
        assert await frame(ws) == {
            "type": "error",
            "reply_to": None,
            "message": ENGLISH.unreadable_message,
        }
        await ws.send_str('{"type": "typing"}')  # unknown types are ignored
        await ws.send_str(message("m1", "still here"))
        assert (await until_final(ws, "m1"))[-1]["type"] == "final"
        await ws.send_str("not json")
        assert await closed_with(ws) == 1007
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_bytes(b"\x00\x01")
        assert await closed_with(ws) == 1003


async def test_files_travel_in_the_frame_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, _ = await start(gateway_factory, dify)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    files = [{"name": "shot", "type": "", "data": base64.b64encode(png).decode()}]
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "what is this?", files=files))
        assert (await until_final(ws, "m1"))[-1]["type"] == "final"
    (upload,) = dify.uploads
    assert upload["data"] == png and upload["name"] == "shot.png"
    assert dify.requests[0]["files"][0]["type"] == "image"


async def test_a_shutdown_sends_clients_elsewhere(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    client, gateway = await start(gateway_factory, dify)
    async with client.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "hello"))
        await until_final(ws, "m1")
        gateway.begin_shutdown()
        assert await closed_with(ws) == 1012  # "service restart": reconnect, elsewhere
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(ws_path())
    assert info.value.status == 503


# --- a client that stops reading -------------------------------------------------------------


async def raw_socket_client(
    port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that does the handshake by hand, with a tiny receive buffer, so
    that it can stop reading the way a stuck browser tab does."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(request.encode())
    status = await reader.readline()
    assert b" 101 " in status, status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81]) + (
        bytes([0x80 | len(payload)])
        if len(payload) < 126
        else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    )
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_client_that_stops_reading_is_cut_off_and_others_are_served(
    gateway_factory: GatewayFactory, dify: DifyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client, gateway = await start(gateway_factory, dify)
    adapter = gateway.adapters["web"]
    adapter.limits = type(adapter.limits)(messages_per_minute=20, stall_s=0.5)  # type: ignore[attr-defined]
    # A long answer: every update carries the whole text, megabytes for a reader that lags.
    chunks = [f"{n:04d} " + "y" * 10_000 + "\n" for n in range(100)]
    dify.reply(ScriptedReply(chunks=chunks, delay=0.02, ragged=False))
    caplog.set_level(logging.WARNING, logger="adapters.web.outbox")
    _, writer = await raw_socket_client(client.port, ws_path("stuck"))
    writer.write(masked_text_frame(message("m1", "a long one, please")))
    await writer.drain()
    await wait_for(lambda: len(adapter.sessions) == 1)  # type: ignore[attr-defined]
    # It never reads again. Meanwhile somebody else chats as usual.
    async with client.ws_connect(ws_path("fine")) as ws:
        await ws.send_str(message("m1", "hello"))
        assert (await until_final(ws, "m1"))[-1]["type"] == "final"
        await wait_for(
            lambda: len(adapter.sessions) == 1,  # type: ignore[attr-defined]
            within=15,
            what="the stuck reader's session to end",
        )
    assert any("cut off" in r.getMessage() for r in caplog.records)
    writer.close()


# --- several instances -----------------------------------------------------------------------


@pytest.mark.redis
async def test_two_instances_socket_on_one_job_on_the_other(
    gateway_factory: GatewayFactory, dify: DifyEmulator, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    flush = aioredis.Redis.from_url(redis_url)
    await flush.flushdb()
    await flush.aclose()
    config = make_config(dify, {"web": web_bot()}, store=redis_url, routes=NO_FEEDBACK)
    config["inbox"] = {"lease_s": 1}
    (a, gw_a), (_, gw_b) = await gateway_factory(config), await gateway_factory(config)
    # A holds the socket but works on no job: its share of the inbox goes to B.
    await gw_a.inbox.drain(0)
    await gw_a.inbox.close()
    dify.reply(ScriptedReply(chunks=WORDS, delay=0.05))
    async with a.ws_connect(ws_path()) as ws:
        await ws.send_str(message("m1", "across instances"))
        frames = await until_final(ws, "m1", within=30)
    assert frames[-1] == {"type": "final", "reply_to": "m1", "text": ANSWER}
    assert len([f for f in frames if f["type"] == "update" and f["text"]]) >= 1
    answered = {name: gw.metrics.render().decode() for name, gw in (("a", gw_a), ("b", gw_b))}
    assert 'dify_gateway_answers_total{bot="web",result="ok"} 1.0' in answered["b"]
    assert 'result="ok"' not in answered["a"]
    await gw_b.inbox.wait_idle()
