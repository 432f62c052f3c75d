"""Feishu, end to end: everything Dify returns besides the answer text, shown well (the
status while the app works, reasoning, sources, usage, files, app modes, errors)."""

from __future__ import annotations

from typing import Any

from gateway.emulator import DifyEmulator, Node, ScriptedReply, Thought
from gateway.runtime import Gateway
from gateway.words import SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory
from tests.fakes.feishu import FakeFeishu, message_event
from tests.integration.test_feishu_e2e import answered, feishu, post, start

__all__ = ["feishu"]  # the fixture, shared with test_feishu_e2e

LABELS = {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}}


async def ask(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    feishu: FakeFeishu,
    reply: ScriptedReply,
    text: str = "hello",
    **config: Any,
) -> tuple[list[str], Gateway]:
    """Ask once in a direct chat; what the answer card showed, state by state."""
    client, gateway = await start(gateway_factory, dify, feishu, **config)
    dify.reply(reply)
    await post(client, message_event(text))
    await answered(gateway, within=10)
    card = next(iter(feishu.cards.values()))
    return [text for _, text in card.states], gateway


async def test_an_agent_shows_the_tool_it_uses_and_the_final_answer_does_not(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(
        chunks=["It is sunny."], thoughts=[Thought("web_search", LABELS, seconds=1)]
    )
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "agent"}})
    assert "_Using Web Search…_" in states
    assert states[-1] == "It is sunny."


async def test_a_chinese_bot_says_the_tool_in_chinese(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["晴。"], thoughts=[Thought("web_search", LABELS, seconds=1)])
    states, _ = await ask(
        gateway_factory,
        dify,
        feishu,
        reply,
        bot={"locale": "zh-CN"},
        routes=[{"match": {"bot": "fs"}, "show_tools": True}],
        apps={"main": {"mode": "agent"}},
    )
    assert "_正在使用 网页搜索…_" in states
    assert states[-1] == "晴。\n\n*" + SIMPLIFIED_CHINESE.tools_used("网页搜索") + "*"


async def test_a_chatflow_shows_the_running_node_until_text_streams(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(
        chunks=["Fifteen ", "days."],
        nodes=[Node("Look up the policy", "tool", seconds=1)],
        delay=0.6,
    )
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "chatflow"}})
    assert "_Working on: Look up the policy…_" in states
    # Once text streams, the title gives way (no status under a chatflow's text).
    assert not any("Working on" in s for s in states if "Fifteen" in s)
    assert states[-1] == "Fifteen days."


async def test_a_tool_called_after_text_started_shows_grey_under_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(
        chunks=["First part. ", "Second part."],
        thoughts=[Thought("web_search", LABELS, seconds=1.2, before_chunk=1)],
        delay=0.3,
    )
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "agent"}})
    assert "First part. \n\n<font color='grey'>Using Web Search…</font>" in states
    assert states[-1] == "First part. Second part."
