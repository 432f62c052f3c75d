"""Slack, end to end: everything Dify returns besides the answer text, shown well (the
status while the app works, reasoning, sources, usage, files, app modes, errors)."""

from __future__ import annotations

from typing import Any

from gateway.emulator import DifyEmulator, EmulatorFile, Node, ScriptedReply, Thought
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


# --- reasoning -----------------------------------------------------------------------------

THINKING_REPLY = {"think": "The user asks about leave. Policy says 15.", "delay": 0.4}


async def test_reasoning_is_hidden_with_a_status_meanwhile(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], **THINKING_REPLY)  # type: ignore[arg-type]
    states = await ask(gateway_factory, dify, slack, reply)
    assert "_Reasoning…_" in states
    assert not any("Policy says" in s or "think>" in s for s in states)
    assert states[-1] == "Fifteen days."


async def test_reasoning_collapsed_is_a_context_block_under_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(
        gateway_factory, dify, slack, routes=[{"match": {}, "reasoning": "collapse"}]
    )
    dify.reply(ScriptedReply(chunks=["Fifteen days."], **THINKING_REPLY))  # type: ignore[arg-type]
    event = direct("how many days?")
    await post(client, envelope(event))
    await answered(gateway, within=10)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text == "Fifteen days."
    assert msg.blocks is not None
    *sections, context = msg.blocks
    assert [s["text"]["text"] for s in sections] == ["Fifteen days."]
    assert context["type"] == "context"
    assert context["elements"][0]["text"] == (
        "*Reasoning*\nThe user asks about leave. Policy says 15."
    )


async def test_reasoning_shown_is_quoted_above_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.")
    routes = [{"match": {}, "reasoning": "show"}]
    states = await ask(gateway_factory, dify, slack, reply, routes=routes)
    assert states[-1] == "> Policy says 15.\n\nFifteen days."


# --- sources and usage ------------------------------------------------------------------------


async def test_sources_are_compact_and_usage_is_a_small_footer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(
        chunks=["Fifteen days."], citations=["Handbook.pdf", "Handbook.pdf", "FAQ"]
    )
    routes = [{"match": {}, "show_usage": True}]
    states = await ask(gateway_factory, dify, slack, reply, routes=routes)
    assert states[-1] == (
        "Fifteen days.\n\n---\n**Sources**\n1. Handbook.pdf\n2. FAQ\n\n*42 tokens · 1.2 s*"
    )


async def test_citations_can_be_switched_off(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], citations=["Handbook.pdf"])
    routes = [{"match": {}, "citations": False}]
    states = await ask(gateway_factory, dify, slack, reply, routes=routes)
    assert states[-1] == "Fifteen days."


# --- files the app produces ------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 20
CHART = EmulatorFile("chart.png", PNG, "image/png")
REPORT = EmulatorFile("report.pdf", b"%PDF-1.7 report", "application/pdf", type="document")


async def test_an_image_the_agent_drew_is_shared_into_the_thread(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack, apps={"main": {"mode": "agent"}})
    dify.reply(ScriptedReply(chunks=["Here ", "is ", "the chart."], app="agent", files=[CHART]))
    event = direct("draw it")
    await post(client, envelope(event))
    await answered(gateway, within=10)
    answer, share = slack.thread("D111", event["ts"])
    # message_file made the rest of the text arrive as message_file events: still text.
    assert answer.text == "Here is the chart."
    (shared,) = share.files
    assert shared["data"] == PNG and shared["name"] == "chart.png"
    assert share.thread_ts == event["ts"]
    # Fetched once, though message_file and message_end both name it.
    assert dify.file_downloads == ["chart.png"]
    upload_calls = slack.of("files.getUploadURLExternal")
    assert upload_calls[0].payload == {"filename": "chart.png", "length": str(len(PNG))}


async def test_files_an_answer_node_links_in_the_text_arrive_as_files(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack, apps={"main": {"mode": "chatflow"}})
    dify.reply(ScriptedReply(chunks=["Your report:"], app="chatflow", files=[CHART, REPORT]))
    event = direct("report please")
    await post(client, envelope(event))
    await answered(gateway, within=10)
    messages = slack.thread("D111", event["ts"])
    assert all("/files/" not in state for m in messages for _, state in m.states)
    assert messages[0].text == "Your report:\n\nreport.pdf"
    assert [f["name"] for f in slack.shared_files("D111", event["ts"])] == [
        "chart.png",
        "report.pdf",
    ]


async def test_a_file_whose_link_expired_is_named_not_linked(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.file_url_ttl = -1  # every signature has expired by the time it is used
    states = await ask(gateway_factory, dify, slack, ScriptedReply(chunks=["Done."], files=[CHART]))
    assert states[-1] == "Done.\n\nchart.png (could not be attached here)"
    assert slack.of("files.getUploadURLExternal") == []


async def test_a_file_slack_refuses_is_named_in_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.fail_next("files.getUploadURLExternal", error="file_uploads_disabled")
    states = await ask(gateway_factory, dify, slack, ScriptedReply(chunks=["Done."], files=[CHART]))
    assert states[-1] == "Done.\n\nchart.png (could not be attached here)"
