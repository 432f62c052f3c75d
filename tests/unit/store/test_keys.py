"""The key builders give the very strings the gateway stored under before they existed:
deployments keep their conversations, checkpoints, tokens and counters across the upgrade."""

from __future__ import annotations

from gateway.store import keys


def test_claim_keys_are_unchanged() -> None:
    assert keys.dedupe_claims("slack-main", ["event:Ev1", "msg:C1:1.2"]) == [
        "slack-main:event:Ev1",
        "slack-main:msg:C1:1.2",
    ]
    assert keys.dedupe_claims("b", ()) == []  # the intake then claims the job id
    assert keys.wecom_bot_first_sight("wecom-ai", "m1") == "wecom_bot:seen:wecom-ai:m1"
    assert keys.access_notice("slack-main", "U1") == "access:notified:slack-main:U1"
    assert keys.dingtalk_sign("ding", "xe0J+/8=") == "dingtalk:sign:ding:xe0J+/8="


def test_conversation_key_is_unchanged() -> None:
    assert keys.conversation("main", "user:b:U1") == "main/user:b:U1"
    assert keys.conversation("main", "thread:b:oc_1:m1") == "main/thread:b:oc_1:m1"


def test_shared_state_keys_are_unchanged() -> None:
    assert keys.answer_record("b:m1") == "answer:b:m1"
    assert (
        keys.platform_token("feishu", "https://open.feishu.cn", "cli_1")
        == "token:feishu:https://open.feishu.cn:cli_1"
    )
    assert keys.platform_token("dingtalk", "ding1") == "token:dingtalk:ding1"
    assert keys.platform_token("wecom", "ww1", "1000002") == "token:wecom:ww1:1000002"
    scope = keys.wecom_quota_scope("ww1", 1000002)
    assert scope == "wecom:quota:ww1:1000002"
    assert keys.wecom_quota(scope, "zhangsan", 60, 28333333) == (
        "wecom:quota:ww1:1000002:zhangsan:60:28333333"
    )
    assert keys.wecom_bot_stream("wecom-ai", "s1") == "wecom_bot:stream:wecom-ai:s1"
    assert keys.wecom_bot_in_flight("wecom-ai", "u1") == "wecom_bot:inflight:wecom-ai:u1"
    assert keys.wecom_bot_card("wecom-ai", "t1") == "wecom_bot:card:wecom-ai:t1"
    assert keys.rate_count("user:b:U1", 28333333) == "rate:user:b:U1:28333333"
    assert keys.rate_count("bot:b", 28333333) == "rate:bot:b:28333333"
    assert keys.dingtalk_signed_message("ding", "xe0J+/8=") == "dingtalk:signed:ding:xe0J+/8="
    assert keys.dingtalk_card("ding", "dgw0a1b") == "dingtalk:card:ding:dgw0a1b"


def test_keys_of_different_bots_and_kinds_differ() -> None:
    assert keys.dedupe_claims("a", ["msg:1"]) != keys.dedupe_claims("b", ["msg:1"])
    assert keys.wecom_bot_stream("bot", "x") != keys.wecom_bot_in_flight("bot", "x")
    # A bot named "dingtalk" whose message id were "sign:…" is still another claim.
    assert keys.dingtalk_sign("b", "S") not in keys.dedupe_claims("dingtalk", ["msg:S"])
    assert keys.platform_token("wecom", "ww1", "1") != keys.platform_token("wecom", "ww1", "2")


def test_web_chat_keys() -> None:
    assert keys.web_channel("web-chat", "u1") == "web:web-chat:u1"
    assert keys.web_owed("web-chat", "u1") == "web:owed:web-chat:u1"
    assert keys.web_answer("web-chat", "u:1", "m1") == "web:answer:web-chat:u:1:m1"
    assert keys.web_upload("web-chat", "u1", "m1", 0) == "web:upload:web-chat:u1:m1:0"
    # Two users of one bot never share a channel or a buffer, nor one user of two bots.
    assert keys.web_channel("a", "u1") != keys.web_channel("a", "u2") != keys.web_channel("b", "u2")
