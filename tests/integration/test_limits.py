"""Limits and access against the fake Slack and the Dify emulator: rate limits per user and
per bot (counted across instances through a real Redis), and a route's allow and deny lists,
each answered with a short notice in the bot's language instead of asking Dify."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.fakes.web import message, mint, until_final, web_bot
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

Client = TestClient[Any, Any]


pytestmark = pytest.mark.usefixtures("one_rate_window")


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    *,
    bot: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    store: str = "memory://",
) -> tuple[Client, Gateway]:
    config = make_config(
        dify, {"slack-main": slack_bot(slack, **(bot or {}))}, routes=routes, store=store
    )
    client, gateway = await gateway_factory(config)
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="slack bot ready")
    return client, gateway


async def ask(
    client: Client, gateway: Gateway, slack: FakeSlack, text: str, user: str = "U222"
) -> str:
    """Send a direct message and wait for its answer; the answer's final text ("" when the
    gateway said nothing)."""
    event = direct(text, user=user, channel=f"D-{user}")
    body = body_of(envelope(event))
    response = await client.post("/webhooks/slack-main", data=body, headers=signed_headers(body))
    assert response.status == 200
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    return "".join(slack.final_texts(event["channel"], event["ts"]))


def refused_count(gateway: Gateway, scope: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "dify_gateway_rate_limited_total", {"bot": "slack-main", "scope": scope}
    )
    return value or 0.0


async def test_a_user_over_their_limit_gets_a_polite_notice_and_others_are_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(
        gateway_factory, dify, slack, routes=[{"user_rate_limit_per_minute": 2}]
    )
    assert "one" in await ask(client, gateway, slack, "one")
    assert "two" in await ask(client, gateway, slack, "two")
    assert await ask(client, gateway, slack, "three") == ENGLISH.user_rate_limited
    # Commands cost the app nothing: they are not counted, and still answered.
    assert "/reset" in await ask(client, gateway, slack, "/help")
    assert "four" in await ask(client, gateway, slack, "four", user="U333")
    assert [r["query"] for r in dify.requests] == ["one", "two", "four"]
    assert refused_count(gateway, "user") == 1 and refused_count(gateway, "bot") == 0
    assert "dify_gateway_rate_limited_total" in gateway.metrics.render().decode()


async def test_a_bot_over_its_limit_refuses_everyone_in_its_language(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(
        gateway_factory, dify, slack, bot={"rate_limit_per_minute": 1, "locale": "zh-CN"}
    )
    assert "first" in await ask(client, gateway, slack, "first", user="U1")
    assert (
        await ask(client, gateway, slack, "second", user="U2")
        == SIMPLIFIED_CHINESE.bot_rate_limited
    )
    assert len(dify.requests) == 1
    assert refused_count(gateway, "bot") == 1


async def test_no_limit_is_the_default(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    for i in range(5):
        assert f"q{i}" in await ask(client, gateway, slack, f"q{i}")
    assert len(dify.requests) == 5 and refused_count(gateway, "user") == 0


async def test_allow_and_deny_lists_refuse_with_one_notice_an_hour(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    routes = [
        {"match": {"chat": "D-U9"}, "deny_chats": ["D-U9"]},
        {"allow_users": ["U1", "U9"], "deny_users": ["U2"]},
    ]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    assert "pilot" in await ask(client, gateway, slack, "pilot", user="U1")
    # Not on the allow list: told once, then left alone.
    assert await ask(client, gateway, slack, "let me in", user="U222") == ENGLISH.access_refused
    assert await ask(client, gateway, slack, "please?", user="U222") == ""
    # Denied, even if on no list at all; and a denied chat refuses whoever writes in it.
    assert await ask(client, gateway, slack, "hi", user="U2") == ENGLISH.access_refused
    assert await ask(client, gateway, slack, "hi", user="U9") == ENGLISH.access_refused
    assert await ask(client, gateway, slack, "/help", user="U2") == ""
    assert [r["query"] for r in dify.requests] == ["pilot"]
    refused = gateway.metrics.registry.get_sample_value(
        "dify_gateway_answers_total", {"bot": "slack-main", "result": "refused"}
    )
    assert refused == 5


@pytest.mark.redis
async def test_limits_are_counted_across_instances(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, redis_url: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    routes = [{"user_rate_limit_per_minute": 2, "allow_users": ["U222", "U1"]}]
    a, gw_a = await start(gateway_factory, dify, slack, routes=routes, store=redis_url)
    b, gw_b = await start(gateway_factory, dify, slack, routes=routes, store=redis_url)
    assert "one" in await ask(a, gw_a, slack, "one")
    assert "two" in await ask(b, gw_b, slack, "two")
    assert await ask(a, gw_a, slack, "three") == ENGLISH.user_rate_limited
    assert await ask(b, gw_b, slack, "four") == ENGLISH.user_rate_limited
    assert len(dify.requests) == 2
    # The refusal notice is remembered in the store too: told once, on either instance.
    assert await ask(a, gw_a, slack, "hi", user="U7") == ENGLISH.access_refused
    assert await ask(b, gw_b, slack, "hi", user="U7") == ""


async def test_the_web_chat_gets_every_refusal_its_page_waits_for(
    gateway_factory: GatewayFactory, dify: DifyEmulator
) -> None:
    """The page shows a thinking bubble for each message until its answer: a refused user
    is told every time, or the bubble would spin forever."""
    routes = [{"match": {"bot": "web"}, "allow_users": ["alice"]}]
    client, _ = await gateway_factory(make_config(dify, {"web": web_bot()}, routes=routes))
    async with client.ws_connect(f"/chat/web/ws?token={mint('mallory')}") as ws:
        for n in range(2):
            await ws.send_str(message(f"m{n}", "let me in"))
            frames = await until_final(ws, f"m{n}")
            assert frames[-1]["type"] == "final"
            assert frames[-1]["text"] == ENGLISH.access_refused
    async with client.ws_connect(f"/chat/web/ws?token={mint('alice')}") as ws:
        await ws.send_str(message("a1", "hello"))
        assert "hello" in (await until_final(ws, "a1"))[-1]["text"]
    assert [r["query"] for r in dify.requests] == ["hello"]
