"""Feishu, end to end: everything Dify returns besides the answer text, shown well (the
status while the app works, reasoning, sources, usage, files, app modes, errors)."""

from __future__ import annotations

from typing import Any

from gateway.emulator import DifyEmulator, EmulatorFile, Node, ScriptedReply, Thought
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory
from tests.fakes.feishu import FakeFeishu, message_event
from tests.integration.test_feishu_e2e import answered, post, start
from tests.unit.feishu.audio_sample import opus_clip

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


async def test_a_loop_shows_its_title_until_text_streams(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(
        chunks=["Checked."], nodes=[Node("Retry until valid", "loop", seconds=1.0)]
    )
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "chatflow"}})
    assert "_Working on: Retry until valid…_" in states
    assert states[-1] == "Checked."


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


# --- reasoning -----------------------------------------------------------------------------


async def test_reasoning_is_hidden_with_a_status_meanwhile(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.", delay=0.4)
    states, _ = await ask(gateway_factory, dify, feishu, reply)
    assert "_Reasoning…_" in states
    assert not any("Policy says" in s or "think>" in s for s in states)
    assert states[-1] == "Fifteen days."


async def test_reasoning_collapsed_is_a_collapsible_panel_above_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.", delay=0.3)
    routes = [{"match": {}, "reasoning": "collapse"}]
    await ask(gateway_factory, dify, feishu, reply, routes=routes)
    card = next(iter(feishu.cards.values()))
    panel, answer, feedback = card.elements()  # 👍/👎 last
    assert feedback["element_id"] == "dgw_feedback"
    assert panel["tag"] == "collapsible_panel" and panel["expanded"] is False
    assert panel["header"]["title"]["content"] == "**Reasoning**"
    assert panel["elements"] == [{"tag": "markdown", "content": "Policy says 15."}]
    assert answer["content"] == "Fifteen days." and not card.streaming


async def test_reasoning_chunks_of_a_chatflow_are_folded_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Yes."], reasoning=["Thinking ", "hard."], delay=0.2)
    routes = [{"match": {}, "reasoning": "collapse"}]
    await ask(
        gateway_factory, dify, feishu, reply, routes=routes, apps={"main": {"mode": "chatflow"}}
    )
    card = next(iter(feishu.cards.values()))
    assert card.elements()[0]["elements"][0]["content"] == "Thinking hard."
    assert card.text() == "Yes."


async def test_without_cardkit_the_reasoning_folds_in_the_patched_card(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    client, gateway = await start(
        gateway_factory, dify, feishu, routes=[{"match": {}, "reasoning": "collapse"}]
    )
    dify.reply(ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.", delay=0.3))
    await post(client, message_event("how long?"))
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    assert message.card is not None and "schema" not in message.card  # still JSON 1.0
    panel, answer, feedback = message.card["elements"]
    assert feedback["tag"] == "action"  # 👍/👎, JSON 1.0
    assert panel["tag"] == "collapsible_panel" and panel["expanded"] is False
    assert "element_id" not in panel  # a JSON 2.0 attribute
    assert panel["header"]["title"]["content"] == "**Reasoning**"
    assert panel["elements"] == [{"tag": "markdown", "content": "Policy says 15."}]
    assert answer == {"tag": "markdown", "content": "Fifteen days."}


async def test_without_cardkit_hidden_reasoning_leaves_no_panel(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.", delay=0.3))
    await post(client, message_event("how long?"))
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    assert message.card is not None
    assert [e["tag"] for e in message.card["elements"]] == ["markdown", "action"]
    assert feishu.transcript() == ["Fifteen days."]


# --- sources and usage ------------------------------------------------------------------------


async def test_sources_are_compact_and_usage_is_a_small_footer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], citations=["Handbook.pdf", "FAQ", "FAQ"])
    states, _ = await ask(
        gateway_factory, dify, feishu, reply, routes=[{"match": {}, "show_usage": True}]
    )
    assert states[-1] == (
        "Fifteen days.\n\n---\n**Sources**\n1. Handbook.pdf\n2. FAQ\n\n*42 tokens · 1.2 s*"
    )


async def test_citations_can_be_switched_off(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], citations=["Handbook.pdf"])
    states, _ = await ask(
        gateway_factory, dify, feishu, reply, routes=[{"match": {}, "citations": False}]
    )
    assert states[-1] == "Fifteen days."


# --- files the app produces ------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 20
CHART = EmulatorFile("chart.png", PNG, "image/png")
REPORT = EmulatorFile("report.pdf", b"%PDF-1.7 report", "application/pdf", type="document")


async def test_an_image_goes_into_the_card_and_a_file_into_a_file_message(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Here you are."], files=[CHART, REPORT])
    await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "agent"}})
    card = next(iter(feishu.cards.values()))
    answer, image, _feedback = card.elements()
    assert answer["content"] == "Here you are."
    assert image["tag"] == "img" and feishu.images[image["img_key"]] == PNG
    assert feishu.file_messages() == [("report.pdf", "pdf", b"%PDF-1.7 report")]
    assert all("/files/" not in text for _, text in card.states)


async def test_a_workflows_files_arrive_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Chart ready."], files=[CHART])
    await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "workflow"}})
    card = next(iter(feishu.cards.values()))
    assert [e["tag"] for e in card.elements()] == ["markdown", "img"]  # a workflow: no 👍/👎
    assert list(feishu.images.values()) == [PNG]


async def test_without_cardkit_the_image_is_in_the_patched_card(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(ScriptedReply(chunks=["Here."], files=[CHART]))
    await post(client, message_event("draw"))
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    assert message.card is not None
    assert [e["tag"] for e in message.card["elements"]] == ["markdown", "img", "action"]


# --- app modes -------------------------------------------------------------------------------


async def test_a_workflow_takes_the_message_in_its_input_and_answers_from_an_output(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    apps = {"main": {"mode": "workflow", "query_input": "question", "output_key": "summary"}}
    reply = ScriptedReply(outputs={"summary": "In short: yes.", "raw": "long"})
    states, _ = await ask(gateway_factory, dify, feishu, reply, "is it?", apps=apps)
    assert states[-1] == "In short: yes."
    assert dify.requests[0]["inputs"] == {"question": "is it?"}


async def test_a_workflow_with_several_outputs_lists_them(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(outputs={"title": "Q3", "summary": "Up 5%"})
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "workflow"}})
    assert states[-1] == "- **title**: Q3\n- **summary**: Up 5%"


async def test_a_failed_workflow_tells_the_user(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(error=("failed", "node crashed"))
    await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "workflow"}})
    (shown,) = feishu.transcript()
    assert ENGLISH.run_failed in shown and "node crashed" not in shown


async def test_a_failed_chatflow_is_a_failure_not_a_parameter_error(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Let me"], app="chatflow", error=("failed", "LLM timed out"))
    await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "chatflow"}})
    (shown,) = feishu.transcript()
    assert shown.startswith("Let me") and ENGLISH.run_failed in shown
    assert ENGLISH.invalid_inputs not in shown


async def test_a_stopped_chatflow_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Partial"], stopped=True)
    states, _ = await ask(gateway_factory, dify, feishu, reply, apps={"main": {"mode": "chatflow"}})
    assert states[-1] == f"Partial\n\n{ENGLISH.run_stopped}"


# --- the opening statement -------------------------------------------------------------------


async def test_the_opening_statement_greets_a_user_once_in_a_direct_chat(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.opening_statement = "您好。我负责回答人事问题。"
    client, gateway = await start(gateway_factory, dify, feishu)
    for question in ("first", "second"):
        dify.reply(ScriptedReply(chunks=["Answer."]))
        await post(client, message_event(question))
        await answered(gateway)
    assert feishu.transcript() == ["您好。我负责回答人事问题。\n\nAnswer.", "Answer."]
    assert dify.parameter_calls == 1  # cached


# --- the app's file upload settings ----------------------------------------------------------


async def test_an_image_the_app_does_not_take_gets_a_note(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.parameters["file_upload"] = {"document": {"enabled": True, "number_limits": 2}}
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event(message_type="image", content={"image_key": "img_v3_1"})
    feishu.add_resource(
        event["event"]["message"]["message_id"], "img_v3_1", PNG, "image", "image/png"
    )
    await post(client, event)
    await answered(gateway)
    assert dify.requests == [] and dify.uploads == []
    assert feishu.transcript() == [ENGLISH.attachment_refused("image.png")]


# --- voice -----------------------------------------------------------------------------------


async def test_voice_for_an_app_without_speech_to_text_gets_a_notice(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.parameters["speech_to_text"] = {"enabled": False}
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event(message_type="audio", content={"file_key": "file_v3_voice"})
    message_id = event["event"]["message"]["message_id"]
    feishu.add_resource(message_id, "file_v3_voice", opus_clip(0.5), "file", "audio/opus")
    await post(client, event)
    await answered(gateway)
    assert dify.requests == [] and dify.uploads == []
    assert feishu.transcript() == [ENGLISH.voice_not_supported]


# --- errors ----------------------------------------------------------------------------------


async def test_an_exhausted_quota_is_said_in_the_bots_language(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(status=429, code="rate_limit_error", message="quota")
    await ask(gateway_factory, dify, feishu, reply, bot={"locale": "zh-CN"})
    (shown,) = feishu.transcript()
    assert SIMPLIFIED_CHINESE.quota_exhausted in shown
    assert len(dify.requests) == 1


async def test_a_model_provider_quota_mid_stream_is_said(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Half"], error=("provider_quota_exceeded", "quota"))
    await ask(gateway_factory, dify, feishu, reply)
    (shown,) = feishu.transcript()
    assert shown.startswith("Half") and ENGLISH.quota_exhausted in shown


async def test_refused_inputs_are_said_without_naming_them(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(status=400, code="invalid_param", message="bad", params="department")
    await ask(gateway_factory, dify, feishu, reply)
    (shown,) = feishu.transcript()
    assert ENGLISH.invalid_inputs in shown and "department" not in shown


async def test_show_progress_false_keeps_node_titles_out(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Yes."], nodes=[Node("Secret step", "code", seconds=1)])
    states, _ = await ask(
        gateway_factory,
        dify,
        feishu,
        reply,
        routes=[{"match": {}, "show_progress": False}],
        apps={"main": {"mode": "chatflow"}},
    )
    assert not any("Secret step" in s for s in states)
    assert states[-1] == "Yes."


async def test_reasoning_shown_is_quoted_above_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    reply = ScriptedReply(chunks=["Fifteen days."], think="Policy says 15.")
    states, _ = await ask(
        gateway_factory, dify, feishu, reply, routes=[{"match": {}, "reasoning": "show"}]
    )
    assert states[-1] == "> Policy says 15.\n\nFifteen days."


async def test_a_completion_app_takes_the_configured_input(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    apps = {"main": {"mode": "completion", "query_input": "text"}}
    states, _ = await ask(
        gateway_factory, dify, feishu, ScriptedReply(chunks=["Done."]), "translate", apps=apps
    )
    assert states[-1] == "Done." and dify.requests[0]["inputs"] == {"text": "translate"}


async def test_route_inputs_go_with_every_message(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    routes = [{"match": {}, "inputs": {"department": "HR"}}]
    client, gateway = await start(gateway_factory, dify, feishu, routes=routes)
    for text in ("first", "second"):
        await post(client, message_event(text))
        await answered(gateway)
    first, second = dify.requests
    assert second["conversation_id"]
    assert first["inputs"] == second["inputs"] == {"department": "HR"}
