"""Building signed Slack events for integration tests."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from adapters.slack.verify import sign
from tests.fakes.slack import BOT_TOKEN, BOT_USER_ID, TEAM_ID, FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
_ids = itertools.count(1)


def slack_bot(fake: FakeSlack, **extra: Any) -> dict[str, Any]:
    return {
        "platform": "slack",
        "app": "main",
        "api_base": fake.base_url,
        "signing_secret": SIGNING_SECRET,
        "bot_token": BOT_TOKEN,
        **extra,
    }


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: str | None = None
) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
        "Content-Type": "application/json",
    }


def envelope(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A111",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):06d}",
        "event_time": int(time.time()),
    }


def new_ts() -> str:
    return f"1710000000.{next(_ids):06d}"


def mention(
    text: str,
    *,
    ts: str | None = None,
    channel: str = "C111",
    user: str = "U222",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "text": f"<@{BOT_USER_ID}> {text}",
        "user": user,
        "ts": ts or new_ts(),
        "team": TEAM_ID,
        "channel": channel,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def direct(
    text: str, *, ts: str | None = None, user: str = "U222", channel: str = "D111"
) -> dict[str, Any]:
    return {
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts or new_ts(),
        "team": TEAM_ID,
        "channel": channel,
        "channel_type": "im",
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
