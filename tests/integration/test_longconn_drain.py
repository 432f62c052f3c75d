"""SIGTERM while answering, on every long-connection mode: real `dify-gateway serve`
processes against the fake platforms.

Each run: a message is being answered when the process gets SIGTERM; another arrives during
the drain. The answer in flight finishes within `shutdown_grace_s`, the process exits 0,
the delivery that came during the drain is not acked (the WeCom AI bot, whose channel never
delivers again, is told to send it again), and the restarted process, on the same SQLite
store, answers it. Every message is answered exactly once, and Dify asked once each.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from gateway.emulator import DifyEmulator
from gateway.words import SIMPLIFIED_CHINESE
from tests.fakes.dingtalk import FakeDingtalk, dingtalk_bot, robot_message
from tests.fakes.feishu import FakeFeishu, message_event
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.wecom_bot import FakeWecomBotServer, text_payload
from tests.helpers import wait_for
from tests.integration.inbox_helpers import full_answer, known_answers
from tests.integration.processes import GatewayProcess
from tests.integration.slack_helpers import direct, envelope

GRACE_S = 10.0
CHUNK_DELAY_S = 0.25  # an answer takes about 2 s: long enough to be cut by a SIGTERM


class Platform(Protocol):
    """One fake platform, as the test drives it."""

    def bot(self) -> dict[str, Any]: ...

    async def send(self, text: str) -> Any:
        """Deliver a new message; returns what identifies the delivery."""

    async def send_again(self, delivery: Any) -> Any:
        """The platform delivers it again (or the user sends it again)."""

    def acked(self, delivery: Any) -> bool: ...

    def refused(self, delivery: Any) -> bool:
        """The gateway did not take the delivery (and said so where it must)."""

    def answered(self, text: str) -> bool:
        """The chat shows the complete answer to `text`, exactly once, finished."""


class SlackSocket:
    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.events: dict[str, dict[str, Any]] = {}

    def bot(self) -> dict[str, Any]:
        return {
            "platform": "slack",
            "app": "main",
            "mode": "socket",
            "api_base": self.fake.base_url,
            "bot_token": BOT_TOKEN,
            "app_token": APP_TOKEN,
        }

    async def send(self, text: str) -> dict[str, Any]:
        self.events[text] = event = direct(text, user="U1", channel="D1")
        delivery = {
            "envelope_id": f"env-{secrets.token_hex(4)}",
            "type": "events_api",
            "payload": envelope(event),
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        await self.fake.socket_send(delivery)
        return delivery

    async def send_again(self, delivery: dict[str, Any]) -> dict[str, Any]:
        again = {**delivery, "retry_attempt": 1, "retry_reason": "timeout"}
        await self.fake.socket_send(again)
        return again

    def acked(self, delivery: dict[str, Any]) -> bool:
        return delivery["envelope_id"] in self.fake.acks

    def refused(self, delivery: dict[str, Any]) -> bool:
        return not self.acked(delivery)

    def answered(self, text: str) -> bool:
        event = self.events[text]
        messages = self.fake.thread(event["channel"], event["ts"])
        return (
            len(messages) == 1
            and messages[0].text.strip() == full_answer(text)
            and not messages[0].open
        )


class FeishuSocket:
    def __init__(self, fake: FakeFeishu) -> None:
        self.fake = fake
        self.events: dict[str, dict[str, Any]] = {}
        self.frames: dict[str, str] = {}  # frame id -> the text of its event

    def bot(self) -> dict[str, Any]:
        return {
            "platform": "feishu",
            "app": "main",
            "mode": "websocket",
            "api_base": self.fake.base_url,
            "app_id": self.fake.app_id,
            "app_secret": self.fake.app_secret,
        }

    async def send(self, text: str) -> str:
        self.events[text] = message_event(text)
        return await self._push(text)

    async def send_again(self, delivery: str) -> str:
        return await self._push(self.frames[delivery])  # the same event, pushed again

    async def _push(self, text: str) -> str:
        frame = await self.fake.push_event(self.events[text])
        self.frames[frame] = text
        return frame

    def _code(self, frame: str) -> int | None:
        ack = self.fake.acks.get(frame)
        return None if ack is None else int(json.loads(ack.payload)["code"])

    def acked(self, delivery: str) -> bool:
        return self._code(delivery) == 200

    def refused(self, delivery: str) -> bool:
        return self._code(delivery) == 500  # Feishu pushes it again

    def answered(self, text: str) -> bool:
        replies = self.fake.replies_to(self.events[text]["event"]["message"]["message_id"])
        if len(replies) != 1:
            return False
        card = self.fake.card_of(replies[0].message_id)
        shown = self.fake.visible(replies[0].message_id).strip()
        return card is not None and not card.streaming and shown == full_answer(text)


class DingtalkStream:
    def __init__(self, fake: FakeDingtalk) -> None:
        self.fake = fake
        self.payloads: dict[str, dict[str, Any]] = {}
        self.frames: dict[str, str] = {}  # frame id -> the text of its message

    def bot(self) -> dict[str, Any]:
        return dingtalk_bot(self.fake)

    async def send(self, text: str) -> str:
        self.payloads[text] = robot_message(self.fake, text)
        frame = await self.fake.push_callback(self.payloads[text])
        self.frames[frame] = text
        return frame

    async def send_again(self, delivery: str) -> str:
        # DingTalk delivers an unacked frame again, with the same message id.
        return await self.fake.push_callback(self.payloads[self.frames[delivery]], delivery)

    def acked(self, delivery: str) -> bool:
        return self.fake.ack_for(delivery) is not None

    def refused(self, delivery: str) -> bool:
        return not self.acked(delivery)

    def answered(self, text: str) -> bool:
        shown = [t.strip() for t in self.fake.texts() if text in t]
        return shown == [full_answer(text)]


class WecomBotSocket:
    def __init__(self, fake: FakeWecomBotServer) -> None:
        self.fake = fake
        self.sent: dict[str, tuple[str, str]] = {}  # req_id -> (msgid, text)

    def bot(self) -> dict[str, Any]:
        return {
            "platform": "wecom_bot",
            "app": "main",
            "mode": "websocket",
            "bot_id": self.fake.bot_id,
            "secret": self.fake.secret,
            "api_base": self.fake.ws_url,
        }

    async def send(self, text: str) -> str:
        msgid = f"msg-{secrets.token_hex(4)}"
        req_id = await self.fake.push("aibot_msg_callback", text_payload(msgid, text))
        self.sent[req_id] = (msgid, text)
        return req_id

    async def send_again(self, delivery: str) -> str:
        msgid, text = self.sent[delivery]
        req_id = await self.fake.push("aibot_msg_callback", text_payload(msgid, text))
        self.sent[req_id] = (msgid, text)
        return req_id

    def _streams(self, req_id: str) -> list[dict[str, Any]]:
        replies = self.fake.replies(req_id)
        return [c.body["stream"] for c in replies if c.kind == "aibot_respond_msg"]

    def acked(self, delivery: str) -> bool:
        return any(s["content"] == SIMPLIFIED_CHINESE.thinking for s in self._streams(delivery))

    def refused(self, delivery: str) -> bool:
        # This channel never delivers a message again: the user is told to send it again.
        streams = self._streams(delivery)
        return [s["content"] for s in streams] == [SIMPLIFIED_CHINESE.cannot_answer_now]

    def answered(self, text: str) -> bool:
        finals = [
            s["content"]
            for req_id, (_, sent) in self.sent.items()
            if sent == text
            for s in self._streams(req_id)
            if s["finish"] and s["content"] != SIMPLIFIED_CHINESE.cannot_answer_now
        ]
        return [f.strip() for f in finals] == [full_answer(text)]


@pytest.fixture(params=["slack", "feishu", "dingtalk", "wecom_bot"])
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    fakes: dict[str, Any] = {
        "slack": FakeSlack,
        "feishu": FakeFeishu,
        "dingtalk": FakeDingtalk,
        "wecom_bot": FakeWecomBotServer,
    }
    fake = fakes[request.param]()
    await fake.start()
    sides: dict[str, Any] = {
        "slack": SlackSocket,
        "feishu": FeishuSocket,
        "dingtalk": DingtalkStream,
        "wecom_bot": WecomBotSocket,
    }
    yield sides[request.param](fake)
    await fake.stop()


async def test_sigterm_mid_answer_drops_nothing_acked(
    platform: Platform, dify: DifyEmulator, tmp_path: Path
) -> None:
    known_answers(dify, delay=CHUNK_DELAY_S)
    config = {
        "server": {"shutdown_grace_s": GRACE_S},
        "store": f"sqlite:///{tmp_path / 'gw.db'}",
        "dify": {"apps": {"main": {"base_url": dify.base_url, "api_key": dify.api_key}}},
        "bots": {"bot": platform.bot()},
    }
    first = GatewayProcess(config, tmp_path, "first")
    restarted = GatewayProcess(config, tmp_path, "restarted")
    try:
        await first.start()
        in_flight = await platform.send("answered during the drain")
        await wait_for(lambda: platform.acked(in_flight), what="the first message acked")
        await wait_for(lambda: len(dify.requests) == 1, what="the answer under way")
        await asyncio.sleep(2 * CHUNK_DELAY_S)  # a part or two shown
        assert not platform.answered("answered during the drain")

        first.terminate()
        terminated_at = time.monotonic()
        await wait_for(lambda: "shutting down" in first.logs(), what="the drain begun")
        late = await platform.send("sent during the drain")
        assert await first.wait(GRACE_S + 5) == 0
        assert time.monotonic() - terminated_at < GRACE_S
        assert platform.answered("answered during the drain"), first.logs()[-3000:]
        await wait_for(lambda: platform.refused(late), what="the late delivery refused")
        assert not platform.acked(late)

        await restarted.start()
        again = await platform.send_again(late)
        await wait_for(lambda: platform.acked(again), within=10, what="the redelivery acked")
        await wait_for(
            lambda: platform.answered("sent during the drain"), within=10, what="its answer"
        )
        await restarted.stop()
        assert restarted.proc is not None and restarted.proc.returncode == 0
    finally:
        for gateway in (first, restarted):
            gateway.kill()
    assert [r["query"] for r in dify.requests] == [
        "answered during the drain",
        "sent during the drain",
    ]
    assert platform.answered("answered during the drain")
    for gateway in (first, restarted):
        assert "Traceback" not in gateway.logs()
