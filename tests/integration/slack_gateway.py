"""A Slack bot's gateway, end to end, for the tests of what users do with its answers
(buttons, forms, modals): started against the fake Slack API (the `slack` fixture in
conftest.py) and the Dify emulator, and sent events and clicks signed as Slack sends them."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack, Message
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

Client = TestClient[Any, Any]
PATH = "/webhooks/slack-main"


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, **config: Any
) -> tuple[Client, Gateway]:
    """A gateway with one Slack bot, `slack-main`, ready (`config`: make_config's keys)."""
    client, gateway = await gateway_factory(
        make_config(dify, {"slack-main": slack_bot(slack)}, **config)
    )
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="slack bot ready")
    return client, gateway


async def ask(client: Client, event: dict[str, Any]) -> None:
    """Post `event` as Slack's Events API does; the gateway acks it."""
    body = body_of(envelope(event))
    response = await client.post(PATH, data=body, headers=signed_headers(body))
    assert response.status == 200


async def answered(gateway: Gateway, within: float = 10.0) -> None:
    """Wait until everything the gateway accepted is answered."""
    async with asyncio.timeout(within):
        await gateway.inbox.wait_idle()


async def say(
    client: Client,
    gateway: Gateway,
    slack: FakeSlack,
    text: str,
    event: dict[str, Any] | None = None,
    **kw: Any,
) -> str:
    """Send a DM (or `event`) and wait for its answer: the text of the answer."""
    event = event or direct(text, **kw)
    await ask(client, event)
    await answered(gateway)
    return "\n".join(slack.final_texts(event.get("channel", "D111"), event["ts"]))


async def answered_in_dm(
    client: Client, gateway: Gateway, slack: FakeSlack, text: str = "hi"
) -> tuple[dict[str, Any], Message]:
    """Ask `text` in a DM and wait for the answer: the event, and the answer's one message."""
    event = direct(text)
    await ask(client, event)
    await answered(gateway)
    (message,) = slack.thread("D111", event["ts"])
    return event, message


def form_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


async def click(client: Client, payload: dict[str, Any], body: bytes | None = None) -> int:
    """Post a click (or a modal's submission) as Slack does: form-encoded, signed like
    events. The HTTP status the gateway answered."""
    body = body or form_body(payload)
    headers = {**signed_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post(PATH, data=body, headers=headers)
    return response.status


async def clicked(client: Client, gateway: Gateway, payload: dict[str, Any]) -> None:
    """Click (or submit a modal) and wait for what the click does."""
    assert await click(client, payload) == 200
    await answered(gateway)


def action_ids(message: Message) -> list[str]:
    return action_ids_of(message.blocks)


def action_ids_of(blocks: list[dict[str, Any]] | None) -> list[str]:
    return [e["action_id"] for b in blocks or [] for e in b.get("elements", [])]
