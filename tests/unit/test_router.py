"""Routes, conversation scopes and Dify users."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.models import ChatType, InboundMessage, Job
from gateway.router import Router, conversation_key, render_inputs


def message(**overrides: Any) -> InboundMessage:
    fields: dict[str, Any] = {
        "bot": "b",
        "platform": "feishu",
        "event_id": "e1",
        "message_id": "m1",
        "chat_id": "oc_1",
        "chat_type": ChatType.GROUP,
        "user_id": "ou_7",
        "user_name": "Ada",
        "text": "hi",
        "received_at": 0.0,
    }
    return InboundMessage(**(fields | overrides))


def router(routes: list[dict[str, Any]]) -> Router:
    return Router(
        parse_config(
            {
                "dify": {
                    "apps": {
                        "main": {"api_key": "k"},
                        "hr": {"api_key": "k"},
                        "it": {"api_key": "k"},
                    }
                },
                "bots": {
                    "b": {
                        "platform": "feishu",
                        "app": "main",
                        "app_id": "cli",
                        "app_secret": "s",
                        "verification_token": "t",
                    }
                },
                "routes": routes,
            },
            env={},
        )
    )


@pytest.mark.parametrize(
    ("scope", "key", "user"),
    [
        ("user", "user:b:ou_7", "b:ou_7"),
        ("chat_user", "chat_user:b:oc_1:ou_7", "b:ou_7"),
        ("chat", "chat:b:oc_1", "b:chat:oc_1"),
        ("thread", "thread:b:oc_1:omt_9", "b:thread:oc_1:omt_9"),
    ],
)
def test_scopes_and_their_dify_users(scope: str, key: str, user: str) -> None:
    assert conversation_key(message(thread_id="omt_9"), scope) == (key, user)  # type: ignore[arg-type]


def test_a_message_outside_a_thread_starts_its_own() -> None:
    assert conversation_key(message(), "thread") == ("thread:b:oc_1:m1", "b:thread:oc_1:m1")


def test_default_scopes() -> None:
    r = router([])
    assert r.decide(message(chat_type=ChatType.DIRECT), threaded_groups=False).scope == "user"
    assert r.decide(message(), threaded_groups=False).scope == "chat_user"
    assert r.decide(message(), threaded_groups=True).scope == "thread"
    assert r.decide(message(), threaded_groups=False).app == "main"
    assert r.decide(message(), threaded_groups=False).require_mention


def test_the_first_matching_route_wins() -> None:
    r = router(
        [
            {"match": {"chat": "oc_hr"}, "app": "hr", "scope": "chat", "require_mention": False},
            {"match": {"platform": "feishu", "chat_type": "group"}, "app": "it"},
            {"app": "hr"},
        ]
    )
    hr = r.decide(message(chat_id="oc_hr"), threaded_groups=False)
    assert (hr.app, hr.scope, hr.require_mention) == ("hr", "chat", False)
    assert r.decide(message(), threaded_groups=False).app == "it"
    assert r.decide(message(chat_type=ChatType.DIRECT), threaded_groups=False).app == "hr"


def test_a_route_without_an_app_keeps_the_bots_app() -> None:
    r = router([{"match": {"user": "ou_7"}, "scope": "chat"}])
    decision = r.decide(message(), threaded_groups=False)
    assert (decision.app, decision.scope) == ("main", "chat")


def test_jobs_carry_the_route_and_conversation() -> None:
    r = router([{"match": {"bot": "b"}, "app": "it", "inputs": {"who": "{user_name}"}}])
    msg = message()
    job = r.job(msg, r.decide(msg, threaded_groups=False), accepted_at=5.0)
    assert job.job_id == "b:m1"
    assert job.conversation_key == "it/chat_user:b:oc_1:ou_7"
    assert job.dify_user == "b:ou_7"
    assert job.input_templates == {"who": "{user_name}"}
    # A job round-trips through JSON, so another process can answer it.
    assert Job.from_json(job.to_json()) == job


def test_render_inputs() -> None:
    templates = {
        "asker": "{user_name} ({user_id})",
        "where": "{platform}:{chat_type}:{chat_id}",
        "bot": "{bot}",
    }
    assert render_inputs(templates, message(), "Ada") == {
        "asker": "Ada (ou_7)",
        "where": "feishu:group:oc_1",
        "bot": "b",
    }
