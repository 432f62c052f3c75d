"""The files an app produces reach the chat as real images and files on every platform
(Slack and Feishu have theirs in test_slack_answers.py and test_feishu_answers.py): a
WeCom app's media upload, the WeCom AI bot's image items, DingTalk's media upload. Where a
platform cannot take a file, its name is in the answer, never Dify's link."""

from __future__ import annotations

import base64
import hashlib

from gateway.emulator import DifyEmulator, EmulatorFile, ScriptedReply
from tests.conftest import GatewayFactory
from tests.fakes.dingtalk import FakeDingtalk, robot_message
from tests.fakes.wecom import FakeQyapi
from tests.fakes.wecom_bot import FakeWecomBotServer, text_payload
from tests.integration import test_dingtalk_http as ding_e2e
from tests.integration import test_wecom_app_e2e as wecom_e2e
from tests.integration import test_wecom_bot_e2e as bot_e2e
from tests.integration.test_wecom_app_e2e import qyapi

__all__ = ["qyapi"]  # the fixtures, shared with the platforms' e2e tests

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 20
CHART = EmulatorFile("chart.png", PNG, "image/png")
REPORT = EmulatorFile("report.pdf", b"%PDF-1.7 report", "application/pdf", type="document")


async def test_wecom_app_sends_an_image_and_a_file_after_the_text(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await wecom_e2e.start(gateway_factory, dify, qyapi, locale="en")
    dify.reply(ScriptedReply(chunks=["Here you are."], files=[CHART, REPORT]))
    await wecom_e2e.post(client, wecom_e2e.text_message("chart please"))
    await wecom_e2e.answered(gateway)
    sent = qyapi.delivered("zhangsan")
    assert [(s.msgtype, s.content) for s in sent] == [
        ("markdown", "Here you are."),
        ("image", "image:chart.png"),
        ("file", "file:report.pdf"),
    ]
    uploads = {kind: (name, data) for kind, name, data in qyapi.uploads.values()}
    assert uploads == {"image": ("chart.png", PNG), "file": ("report.pdf", REPORT.data)}


async def test_wecom_app_names_a_file_it_cannot_upload(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await wecom_e2e.start(gateway_factory, dify, qyapi, locale="en")
    tiny = EmulatorFile("tiny.txt", b"abc", "text/plain", type="document")  # ≤ 5 bytes
    dify.reply(ScriptedReply(chunks=["Done."], files=[tiny]))
    await wecom_e2e.post(client, wecom_e2e.text_message("go"))
    await wecom_e2e.answered(gateway)
    assert qyapi.texts("zhangsan") == ["Done.\n\ntiny.txt (could not be attached here)"]


async def test_wecom_ai_bot_shows_images_in_the_final_reply(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await bot_e2e.start(gateway_factory, dify)
    dify.reply(ScriptedReply(chunks=["图表如下。"], files=[CHART, REPORT]))
    first = await bot_e2e.ask(client, text_payload("msg-files-1", "画个图"))
    seen = await bot_e2e.refresh_until_finished(client, first["id"])
    final = seen[-1]
    assert final["content"] == "图表如下。\n\n" + bot_e2e.WORDS.file_missing("report.pdf")
    (item,) = final["msg_item"]
    assert base64.b64decode(item["image"]["base64"]) == PNG
    assert item["image"]["md5"] == hashlib.md5(PNG).hexdigest()
    assert all("msg_item" not in s for s in seen[:-1])  # only with finish: true
    await bot_e2e.answered(gateway)


async def test_dingtalk_uploads_and_sends_the_files_after_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await ding_e2e.start(gateway_factory, dify, ding)
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Done."], files=[CHART, REPORT])
    await ding_e2e.post(client, robot_message(ding, "report please"))
    await ding_e2e.answered(gateway)
    assert ding.texts() == ["Done."]
    (image, image_param), (file, file_param) = ding.media_sent()
    assert image == "sampleImageMsg" and ding.media[image_param["photoURL"]][2] == PNG
    assert file == "sampleFile"
    assert file_param["fileName"] == "report.pdf" and file_param["fileType"] == "pdf"
    assert ding.media["@" + file_param["mediaId"]][2] == REPORT.data


async def test_dingtalk_card_answers_show_images_in_the_card_and_send_other_files(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await ding_e2e.start(
        gateway_factory, dify, ding, card_template_id="tpl.schema"
    )
    reply = ScriptedReply(chunks=["Chart:"], files=[CHART, REPORT])
    dify.responder = lambda request, turn: reply
    await ding_e2e.post(client, robot_message(ding, "chart", group=True))
    await ding_e2e.answered(gateway)
    (card,) = ding.cards.values()
    assert card.flow[-1] == "3"
    (image_id,) = [m for m, (kind, _, _) in ding.media.items() if kind == "image"]
    assert ding.media[image_id][2] == PNG
    url = "https://down.dingtalk.com/media/" + image_id.removeprefix("@")
    assert card.content == f"Chart:\n\n![chart.png]({url})"
    assert all(f"![chart.png]({url})" not in state for state in card.states[:-1])
    ((key, param),) = ding.media_sent()  # the image is not sent a second time
    assert key == "sampleFile" and param["fileName"] == "report.pdf"
    assert ding.media["@" + param["mediaId"]][2] == REPORT.data


async def test_dingtalk_external_users_get_the_files_named(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await ding_e2e.start(gateway_factory, dify, ding)
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Done."], files=[CHART])
    await ding_e2e.post(client, robot_message(ding, "chart", staff_id=""))
    await ding_e2e.answered(gateway)
    assert ding.texts() == ["Done.\n\nchart.png (could not be attached here)"]
    assert ding.media == {}
