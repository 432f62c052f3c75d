"""What the durable-inbox tests share: a Slack bot on a given store with a short lease, a
Dify whose answers are known in advance, signed webhooks, and "answered exactly once"."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator, ScriptedReply
from tests.conftest import make_config
from tests.fakes.slack import FakeSlack
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

LEASE_S = 1.0  # takeovers within a second or two, so each test takes seconds
CHUNKS = 8


def answer_for(query: str) -> list[str]:
    """Dify's answer to `query`, chunk by chunk (the same every time it is asked)."""
    return [f"{query}-part{i} " for i in range(CHUNKS)]


def full_answer(query: str) -> str:
    return "".join(answer_for(query)).strip()


def known_answers(dify: DifyEmulator, delay: float = 0.02) -> DifyEmulator:
    """Make `dify` answer every query with `answer_for(query)`, a chunk every `delay` s."""

    def respond(request: dict[str, Any], turn: int) -> ScriptedReply:
        return ScriptedReply(chunks=answer_for(str(request["query"])), delay=delay)

    dify.responder = respond
    return dify


def slack_config(
    dify: DifyEmulator,
    slack: FakeSlack,
    store: str,
    *,
    server: dict[str, Any] | None = None,
    inbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config = make_config(dify, {"slack-main": slack_bot(slack)}, store=store, server=server)
    config["inbox"] = {"lease_s": LEASE_S, "shards": 4, **(inbox or {})}
    return config


def question(n: int, text: str | None = None) -> dict[str, Any]:
    """A Slack event callback: a DM from user n (one conversation per user)."""
    return envelope(direct(text or f"q{n}", user=f"U{n:03d}", channel=f"D{n:03d}"))


async def post(client: TestClient[Any, Any], payload: dict[str, Any], retry: int = 0) -> int:
    """Deliver `payload` as Slack does; `retry` > 0 is Slack's retry of the same event."""
    body = body_of(payload)
    headers = signed_headers(body)
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"}
    response = await client.post("/webhooks/slack-main", data=body, headers=headers)
    return int(response.status)


def replies_to(slack: FakeSlack, payload: dict[str, Any]) -> list[str]:
    event = payload["event"]
    return [m.text for m in slack.thread(event["channel"], event["ts"])]


def answered_once(slack: FakeSlack, payload: dict[str, Any]) -> bool:
    """The chat shows exactly one reply to the question: its complete answer, closed."""
    event = payload["event"]
    messages = slack.thread(event["channel"], event["ts"])
    return (
        len(messages) == 1
        and messages[0].text.strip() == full_answer(event["text"])
        and not messages[0].open
    )


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return 0.0
