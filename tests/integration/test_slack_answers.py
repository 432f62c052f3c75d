"""Slack, end to end: everything Dify returns besides the answer text, shown well (the
status while the app works, reasoning, sources, usage, files, app modes, errors)."""

from __future__ import annotations

from typing import Any

from gateway.emulator import DifyEmulator, Node, ScriptedReply, Thought
from tests.conftest import GatewayFactory
from tests.fakes.slack import FakeSlack
from tests.integration.slack_helpers import direct, envelope
from tests.integration.test_slack_e2e import answered, post, slack, start

__all__ = ["slack"]  # the fixture, shared with test_slack_e2e

LABELS = {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}}


async def ask(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    reply: ScriptedReply,
    text: str = "hello",
    **config: Any,
) -> list[str]:
    """Ask once in a DM; what the answer message showed, state by state."""
    client, gateway = await start(gateway_factory, dify, slack, **config)
    dify.reply(reply)
    event = direct(text)
    await post(client, envelope(event))
    await answered(gateway, within=10)
    (msg,) = [m for m in slack.thread("D111", event["ts"]) if not m.text.startswith("<file")]
    return [text for _, text in msg.states]


async def test_an_agent_shows_the_tool_it_uses_and_the_final_answer_does_not(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(
        chunks=["It is ", "sunny."],
        app="agent",
        thoughts=[Thought("web_search", LABELS, seconds=1.5)],
    )
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "agent"}})
    assert "_Using Web Search…_" in states
    assert states[-1] == "It is sunny."


async def test_show_tools_adds_a_used_line(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(
        chunks=["Done."], app="agent", thoughts=[Thought("web_search;calculator", LABELS)]
    )
    routes = [{"match": {"bot": "slack-main"}, "show_tools": True}]
    states = await ask(
        gateway_factory, dify, slack, reply, routes=routes, apps={"main": {"mode": "agent"}}
    )
    assert states[-1] == "Done.\n\n*Used: Web Search, calculator*"


async def test_a_chatflow_shows_the_running_node_until_text_streams(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(
        chunks=["Fifteen ", "days."],
        nodes=[Node("Start", "start"), Node("Look up the policy", "tool", seconds=1.5)],
    )
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "chatflow"}})
    assert "_Working on: Look up the policy…_" in states
    assert states[-1] == "Fifteen days."


async def test_show_progress_false_keeps_node_titles_out(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Yes."], nodes=[Node("Secret step", "code", seconds=1.2)])
    routes = [{"match": {"bot": "slack-main"}, "show_progress": False}]
    states = await ask(
        gateway_factory, dify, slack, reply, routes=routes, apps={"main": {"mode": "chatflow"}}
    )
    assert not any("Secret step" in s for s in states)
    assert states[-1] == "Yes."
