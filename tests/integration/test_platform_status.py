"""The status line on the platforms besides Slack and Feishu (theirs are in
test_slack_answers.py and test_feishu_answers.py): a DingTalk AI card and the WeCom AI bot
show it; a WeCom app, which cannot edit, shows none; no final message keeps it."""

from __future__ import annotations

from gateway.emulator import DifyEmulator, ScriptedReply, Thought
from tests.conftest import GatewayFactory
from tests.fakes.dingtalk import FakeDingtalk, robot_message
from tests.fakes.wecom import FakeQyapi
from tests.fakes.wecom_bot import FakeWecomBotServer, text_payload
from tests.integration import test_dingtalk_http as ding_e2e
from tests.integration import test_wecom_app_e2e as wecom_e2e
from tests.integration import test_wecom_bot_e2e as bot_e2e
from tests.integration.test_wecom_app_e2e import qyapi

__all__ = ["qyapi"]  # the fixtures, shared with the platforms' e2e tests

LABELS = {"web_search": {"en_US": "Web Search", "zh_Hans": "网页搜索"}}


def agent_reply(text: str, seconds: float = 1.2) -> ScriptedReply:
    return ScriptedReply(chunks=[text], thoughts=[Thought("web_search", LABELS, seconds=seconds)])


async def test_a_dingtalk_ai_card_shows_the_status_then_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await ding_e2e.start(
        gateway_factory, dify, ding, card_template_id="tpl.schema"
    )
    dify.responder = lambda request, turn: agent_reply("Sunny.")
    await ding_e2e.post(client, robot_message(ding, "weather?"))
    await ding_e2e.answered(gateway)
    (card,) = ding.cards.values()
    assert "_Using Web Search…_" in card.states
    assert card.content == "Sunny." and card.flow[-1] == "3"


async def test_dingtalk_markdown_replies_show_no_status(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await ding_e2e.start(gateway_factory, dify, ding)
    dify.responder = lambda request, turn: agent_reply("Sunny.", seconds=0.5)
    await ding_e2e.post(client, robot_message(ding, "weather?"))
    await ding_e2e.answered(gateway)
    assert ding.texts() == ["Sunny."]


async def test_the_wecom_ai_bot_shows_the_status_in_its_stream(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await bot_e2e.start(gateway_factory, dify)
    dify.reply(agent_reply("晴。"))
    first = await bot_e2e.ask(client, text_payload("msg-status-1", "天气"))
    seen = await bot_e2e.refresh_until_finished(client, first["id"])
    contents = [s["content"] for s in seen]
    assert "正在使用 网页搜索…" in contents
    assert contents[-1] == "晴。"
    await bot_e2e.answered(gateway)


async def test_a_wecom_app_shows_no_status(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await wecom_e2e.start(gateway_factory, dify, qyapi, locale="en")
    dify.reply(agent_reply("Sunny.", seconds=0.5))
    await wecom_e2e.post(client, wecom_e2e.text_message("weather?"))
    await wecom_e2e.answered(gateway)
    assert qyapi.texts("zhangsan") == ["Sunny."]
