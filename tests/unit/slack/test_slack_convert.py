"""Slack payloads (recorded shapes in tests/data/slack) -> outcomes and messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.convert import parse_body, to_outcome, to_plain_text
from adapters.slack.mrkdwn import to_mrkdwn
from gateway.models import Answered, ChatType, Ignored, Messages
from gateway.platform import MalformedRequest

DATA = Path(__file__).parents[2] / "data" / "slack"


def load(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return payload


def outcome(name: str) -> Any:
    return to_outcome(load(name), bot="sb", bot_user_id="U111", received_at=1.0)


def test_app_mention() -> None:
    result = outcome("app_mention")
    assert isinstance(result, Messages)
    (msg,) = result.messages
    assert msg.text == (
        "what is our VPN policy (https://intranet.example/vpn) & who do I ask? cc @bob @here"
    )
    assert msg.mentioned and not msg.from_bot
    assert msg.chat_type is ChatType.GROUP
    assert (msg.chat_id, msg.user_id, msg.thread_id) == ("C111", "U222", "1610241741.000200")
    assert msg.dedupe_keys == ("event:Ev111", "msg:C111:1610241741.000200")
    assert msg.reply_to == {"team_id": "T111"}


def test_direct_message_and_thread_reply() -> None:
    (dm,) = outcome("message_im").messages
    assert dm.chat_type is ChatType.DIRECT and dm.text == "Hi there!"
    (reply,) = outcome("message_thread_reply").messages
    assert reply.thread_id == "1610241741.000200"  # answered in the existing thread


def test_file_share_becomes_attachments() -> None:
    (msg,) = outcome("message_file_share").messages
    doc, photo = msg.attachments
    assert (doc.kind, doc.name, doc.mime_type) == ("document", "report.pdf", "application/pdf")
    assert doc.source["url"].endswith("/download/report.pdf")
    assert (photo.kind, photo.source["url"]) == (
        "image",
        "https://files.slack.com/files-pri/T111-F222/photo.jpg",
    )


def test_bot_messages_are_marked_and_edits_ignored() -> None:
    assert isinstance(outcome("message_changed"), Ignored)
    assert isinstance(outcome("message_bot"), Ignored)  # subtype bot_message
    payload = load("message_im")
    payload["event"]["bot_id"] = "B1"
    (msg,) = to_outcome(payload, bot="sb", bot_user_id="U111", received_at=1.0).messages
    assert msg.from_bot


def test_url_verification_and_ssl_check() -> None:
    challenge = outcome("url_verification")
    assert isinstance(challenge, Answered)
    assert json.loads(challenge.response.body) == {
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    }
    ssl = to_outcome(
        parse_body(b"ssl_check=1&token=x"), bot="sb", bot_user_id="U1", received_at=1.0
    )
    assert isinstance(ssl, Answered) and ssl.response.status == 200 and not ssl.response.body


@pytest.mark.parametrize("body", [b"{broken", b"[1, 2]", b"\xff\xfe", b"a=1&&=b&c"])
def test_unparseable_bodies(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_body(body)


def test_slash_commands_are_acked_and_ignored() -> None:
    form = parse_body(b"command=%2Fask&text=hello&user_id=U1")
    assert isinstance(to_outcome(form, bot="sb", bot_user_id="U1", received_at=1.0), Ignored)


def test_plain_text_keeps_other_mentions_readable() -> None:
    assert (
        to_plain_text(
            "<@U111> hi <@U2> in <#C1|general> <mailto:a@b.c|a@b.c> <!subteam^S1|@oncall> &lt;3",
            "U111",
        )
        == "hi @U2 in #general a@b.c @oncall <3"
    )


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic* and ~~gone~~", "*bold* and _italic_ and ~gone~"),
        ("# Title\n## Sub **x**", "*Title*\n*Sub x*"),
        ("[the docs](https://x.example/a?b=1&c=2)", "<https://x.example/a?b=1&amp;c=2|the docs>"),
        ("- one\n* two\n  + three", "• one\n• two\n  • three"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("use `**not bold**` here", "use `**not bold**` here"),
        ("```python\nx = a < b  # **no**\n```\n**yes**", "```\nx = a &lt; b  # **no**\n```\n*yes*"),
        ("![chart](https://x.example/c.png)", "<https://x.example/c.png|chart>"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn
