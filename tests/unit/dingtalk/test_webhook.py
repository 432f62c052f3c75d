"""The sessionWebhook host check (docs/configuration.md, "Default API bases"): DingTalk's
hosts or api_base's, nothing else."""

from __future__ import annotations

import pytest

from adapters.dingtalk.webhook import refusal

BASE = "https://api.dingtalk.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://oapi.dingtalk.com/robot/sendBySession?session=abc",
        "https://api.dingtalk.com/robot/sendBySession?session=abc",
        "https://oapi.dingtalk.com:443/robot/sendBySession?session=abc",
        "https://OAPI.dingtalk.com/robot/sendBySession?session=abc",
    ],
)
def test_dingtalk_hosts_are_trusted(url: str) -> None:
    assert refusal(url, BASE) is None


def test_api_base_origin_is_trusted() -> None:
    base = "http://127.0.0.1:8123/prefix"
    assert refusal("http://127.0.0.1:8123/robot/sendBySession?session=x", base) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/robot/sendBySession?session=abc",
        "https://oapi.dingtalk.com.evil.example.com/robot/sendBySession",
        "https://evil.example.com/?u=https://oapi.dingtalk.com/",
        "https://oapi.dingtalk.com@evil.example.com/robot/sendBySession",
        "https://user:pw@oapi.dingtalk.com/robot/sendBySession",
        "http://oapi.dingtalk.com/robot/sendBySession?session=abc",  # not TLS
        "https://oapi.dingtalk.com:8443/robot/sendBySession",
        "https://evil.example.com\\@oapi.dingtalk.com/robot",
        "https://oapi.dingtalk.com /robot",
        "http://127.0.0.1:9999/robot/sendBySession",  # api_base's host, another port
        "https://[::1/",
        "javascript:alert(1)",
    ],
)
def test_other_hosts_are_refused(url: str) -> None:
    reason = refusal(url, "http://127.0.0.1:8123")
    assert reason is not None
    assert "session=" not in reason  # never echo the webhook's credential


def test_empty_webhook_is_refused() -> None:
    assert refusal("", BASE) == "no sessionWebhook"
