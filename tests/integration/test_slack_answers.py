"""Slack, end to end: everything Dify returns besides the answer text, shown well (the
status while the app works, reasoning, sources, usage, files, app modes, errors)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import audio
from gateway.emulator import DifyEmulator, EmulatorFile, Node, ScriptedReply, Thought
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory
from tests.fakes.slack import FakeSlack
from tests.integration.slack_helpers import direct, envelope, mention
from tests.integration.test_slack_e2e import answered, post, start
from tests.unit.feishu.audio_sample import opus_clip

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


async def test_an_iteration_shows_its_title_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(
        chunks=["All summarised."], nodes=[Node("Summarise each file", "iteration", seconds=1.5)]
    )
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "workflow"}})
    assert "_Working on: Summarise each file…_" in states
    assert states[-1] == "All summarised."


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
    # Without 👍/👎, the reasoning is the only block under the text.
    routes = [{"match": {}, "reasoning": "collapse", "feedback": False}]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
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


# --- app modes -------------------------------------------------------------------------------


async def test_a_workflow_takes_the_message_in_its_input_and_answers_from_an_output(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    apps = {"main": {"mode": "workflow", "query_input": "question", "output_key": "summary"}}
    reply = ScriptedReply(outputs={"summary": "In short: yes.", "raw": "long text", "n": 3})
    states = await ask(gateway_factory, dify, slack, reply, "is it?", apps=apps)
    assert states[-1] == "In short: yes."
    assert dify.requests[0]["inputs"] == {"question": "is it?"}
    assert "query" not in dify.requests[0]


async def test_a_workflow_without_an_output_key_answers_with_its_one_text_output(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(outputs={"result": "Forty-two.", "score": 0.9})
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "workflow"}})
    assert states[-1] == "Forty-two."
    assert dify.requests[0]["inputs"] == {"query": "hello"}


async def test_a_streaming_workflow_shows_its_text_chunks(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Stream", "ed."], outputs={"a": "x", "b": "y"})
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "workflow"}})
    assert states[-1] == "Streamed."


async def test_a_failed_workflow_tells_the_user(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Half"], error=("failed", "node 'code' crashed"))
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "workflow"}})
    assert states[-1] == f"Half\n\n{ENGLISH.run_failed}"


async def test_a_stopped_workflow_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Partial"], stopped=True)
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "workflow"}})
    assert states[-1] == f"Partial\n\n{ENGLISH.run_stopped}"


async def test_a_workflow_gets_the_users_file_in_its_file_input(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.parameters["user_input_form"] = [
        {"paragraph": {"variable": "query", "required": True}},
        {"file": {"variable": "doc", "required": True, "allowed_file_types": ["image"]}},
    ]
    apps = {"main": {"mode": "workflow", "file_input": "doc"}}
    client, gateway = await start(gateway_factory, dify, slack, apps=apps)
    slack.files["chart.png"] = PNG
    event = {**direct("what is this?"), "subtype": "file_share", "files": [slack_file(slack)]}
    await post(client, envelope(event))
    await answered(gateway)
    (upload,) = dify.uploads
    request = dify.requests[0]
    assert request["inputs"]["doc"] == {
        "type": "image",
        "transfer_method": "local_file",
        "upload_file_id": upload["id"],
    }
    assert "files" not in request


async def test_a_failed_chatflow_is_a_failure_not_a_parameter_error(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(chunks=["Let me"], app="chatflow", error=("failed", "LLM timed out"))
    states = await ask(gateway_factory, dify, slack, reply, apps={"main": {"mode": "chatflow"}})
    assert states[-1] == f"Let me\n\n{ENGLISH.run_failed}"


async def test_a_completion_app_takes_the_configured_input(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    apps = {"main": {"mode": "completion", "query_input": "text"}}
    states = await ask(
        gateway_factory, dify, slack, ScriptedReply(chunks=["Done."]), "translate", apps=apps
    )
    assert states[-1] == "Done."
    assert dify.requests[0]["inputs"] == {"text": "translate"}


async def test_route_inputs_go_with_every_message(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    routes = [{"match": {}, "inputs": {"department": "IT", "where": "{chat_id}"}}]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    for text in ("first", "second"):
        dify.reply(ScriptedReply(chunks=["ok"]))
        await post(client, envelope(direct(text)))
        await answered(gateway)
    first, second = dify.requests
    assert second["conversation_id"]  # the same conversation, continued
    assert first["inputs"] == second["inputs"] == {"department": "IT", "where": "D111"}


# --- the opening statement -------------------------------------------------------------------


async def test_the_opening_statement_greets_a_user_once_in_a_direct_chat(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.opening_statement = "Hi, I answer HR questions."
    client, gateway = await start(gateway_factory, dify, slack)
    texts = []
    for question in ("first", "second"):
        dify.reply(ScriptedReply(chunks=["Answer."]))
        event = direct(question)
        await post(client, envelope(event))
        await answered(gateway)
        texts.append(slack.thread("D111", event["ts"])[0].text)
    assert texts == ["Hi, I answer HR questions.\n\nAnswer.", "Answer."]
    # /reset starts a new conversation, not a new acquaintance.
    await post(client, envelope(direct("/reset")))
    await answered(gateway)
    dify.reply(ScriptedReply(chunks=["Again."]))
    event = direct("third")
    await post(client, envelope(event))
    await answered(gateway)
    assert slack.thread("D111", event["ts"])[0].text == "Again."


async def test_no_greeting_in_a_group(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.opening_statement = "Hi, I answer HR questions."
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Answer."]))
    event = mention("question")
    await post(client, envelope(event))
    await answered(gateway)
    assert slack.thread("C111", event["ts"])[0].text == "Answer."


# --- the app's file upload settings ----------------------------------------------------------


def slack_file(
    slack: FakeSlack, name: str = "chart.png", mimetype: str = "image/png"
) -> dict[str, Any]:
    return {
        "id": f"F{name}",
        "name": name,
        "mimetype": mimetype,
        "url_private_download": slack.base_url.replace("/api", f"/files/{name}"),
    }


async def test_a_file_the_app_does_not_take_gets_a_note_and_the_text_is_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.parameters["file_upload"] = {"image": {"enabled": True, "number_limits": 3}}
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["notes.pdf"] = b"%PDF-1.7 notes"
    dify.reply(ScriptedReply(chunks=["Answer."]))
    event = {
        **direct("summarise this"),
        "subtype": "file_share",
        "files": [slack_file(slack, "notes.pdf", "application/pdf")],
    }
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.uploads == []
    assert "files" not in dify.requests[0]
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text == f"{ENGLISH.attachment_refused('notes.pdf')}\n\nAnswer."


async def test_only_refused_files_are_answered_with_the_note_alone(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.parameters["file_upload"] = {"enabled": False}
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["chart.png"] = PNG
    event = {**direct(""), "subtype": "file_share", "files": [slack_file(slack)]}
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.requests == [] and dify.uploads == []
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text == ENGLISH.attachment_refused("chart.png")


async def test_a_file_over_the_apps_size_limit_is_not_sent(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.parameters["system_parameters"] = {
        **dify.parameters["system_parameters"],
        "image_file_size_limit": 1,
    }
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["chart.png"] = PNG + b"\x00" * (1024 * 1024)
    dify.reply(ScriptedReply(chunks=["Answer."]))
    event = {**direct("look"), "subtype": "file_share", "files": [slack_file(slack)]}
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.uploads == []
    assert ENGLISH.attachment_too_large("chart.png", 1) in slack.thread("D111", event["ts"])[0].text


# --- voice -----------------------------------------------------------------------------------


async def test_a_voice_clip_in_ogg_is_converted_and_transcribed(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["clip.ogg"] = opus_clip(0.5)
    dify.reply(ScriptedReply(chunks=["Heard you."]))
    event = {
        **direct(""),
        "subtype": "file_share",
        "files": [slack_file(slack, "clip.ogg", "audio/ogg")],
    }
    await post(client, envelope(event))
    await answered(gateway)
    (audio_upload,) = dify.uploads
    assert audio_upload["mime_type"] == "audio/mp3" and audio_upload["name"] == "clip.mp3"
    assert dify.requests[0]["query"] == "transcribed audio"


async def test_without_pyav_a_clip_dify_cannot_take_gets_a_notice(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audio, "available", lambda: False)
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["clip.webm"] = b"\x1a\x45\xdf\xa3 webm bytes"
    event = {
        **direct(""),
        "subtype": "file_share",
        "files": [slack_file(slack, "clip.webm", "audio/webm")],
    }
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.requests == [] and dify.uploads == []
    assert slack.thread("D111", event["ts"])[0].text == ENGLISH.voice_not_supported


# --- errors ----------------------------------------------------------------------------------


async def test_an_exhausted_quota_is_said_and_not_retried(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    reply = ScriptedReply(status=429, code="rate_limit_error", message="quota")
    states = await ask(gateway_factory, dify, slack, reply)
    assert states[-1] == ENGLISH.quota_exhausted
    assert len(dify.requests) == 1


async def test_the_apps_concurrency_cap_is_retried_before_the_first_byte(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(
        ScriptedReply(status=429, code="too_many_requests", message="busy"),
        ScriptedReply(chunks=["Got through."]),
    )
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway, within=10)
    assert len(dify.requests) == 2
    assert slack.thread("D111", event["ts"])[0].text == "Got through."


async def test_refused_inputs_are_named_in_the_log_not_the_chat(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = ScriptedReply(
        status=400, code="invalid_param", message="department is required", params="department"
    )
    states = await ask(gateway_factory, dify, slack, reply)
    assert states[-1] == ENGLISH.invalid_inputs and "department" not in states[-1]
    assert any("department" in r.getMessage() for r in caplog.records)


async def test_a_completed_conversation_says_so_and_the_next_message_starts_anew(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    await gateway.store.set_conversation("main/user:slack-main:U222", "old-conversation")
    dify.conversations["old-conversation"] = 3
    dify.reply(ScriptedReply(status=400, code="conversation_completed", message="ended"))
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway)
    assert slack.thread("D111", event["ts"])[0].text == ENGLISH.conversation_completed
    assert await gateway.store.get_conversation("main/user:slack-main:U222") is None


@pytest.mark.parametrize(
    ("code", "entry"),
    [
        ("app_unavailable", "app_unavailable"),
        ("model_currently_not_support", "model_unavailable"),
        ("provider_quota_exceeded", "quota_exhausted"),
        ("unsupported_file_type", "file_rejected"),
    ],
)
async def test_dify_errors_have_short_texts(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, code: str, entry: str
) -> None:
    states = await ask(gateway_factory, dify, slack, ScriptedReply(status=400, code=code))
    assert states[-1] == getattr(ENGLISH, entry)


async def test_reasoning_collapsed_under_a_streamed_answer_closes_the_stream_with_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    # Without 👍/👎, the reasoning is the only block under the text.
    routes = [{"match": {}, "reasoning": "collapse", "feedback": False}]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    # Quick reasoning: no status ever shows, so the answer streams.
    dify.reply(ScriptedReply(chunks=["Fifteen ", "days."], think="Policy says 15."))
    event = direct("how many days?")
    await post(client, envelope(event))
    await answered(gateway, within=10)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.streaming and not msg.open and msg.text == "Fifteen days."
    stop = slack.of("chat.stopStream")[-1].payload
    assert stop["blocks"] == [
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "*Reasoning*\nPolicy says 15."}],
        }
    ]
