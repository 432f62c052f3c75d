"""`dify-gateway check --probe` against the fake platforms and the Dify emulator: every bot's
credentials and every app are tried, one table comes out, a failure exits 1, and no secret
is ever printed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.emulator import DifyEmulator
from tests.fakes.dingtalk import FakeDingtalk, dingtalk_bot
from tests.fakes.feishu import FakeFeishu
from tests.fakes.slack import FakeSlack
from tests.fakes.web import web_bot
from tests.fakes.wecom import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeQyapi
from tests.fakes.wecom_bot import VECTOR_AES_KEY, VECTOR_TOKEN
from tests.integration.slack_helpers import slack_bot


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    started = {
        "slack": FakeSlack(),
        "feishu": FakeFeishu(),
        "wecom": FakeQyapi(),
        "dingtalk": FakeDingtalk(),
    }
    for fake in started.values():
        await fake.start()
    yield started
    for fake in started.values():
        await fake.stop()


def bots(fakes: dict[str, Any]) -> dict[str, Any]:
    feishu = fakes["feishu"]
    return {
        "slack-main": slack_bot(fakes["slack"], mode="socket", app_token="xapp-test-token"),
        "feishu-hr": {
            "platform": "feishu",
            "app": "main",
            "api_base": feishu.base_url,
            "mode": "websocket",
            "app_id": feishu.app_id,
            "app_secret": feishu.app_secret,
        },
        "wecom-it": {
            "platform": "wecom",
            "app": "main",
            "api_base": fakes["wecom"].base_url,
            "corp_id": CORP_ID,
            "agent_id": AGENT_ID,
            "secret": SECRET,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
        },
        "dingtalk-ops": dingtalk_bot(fakes["dingtalk"]),
        "wecom-ai": {
            "platform": "wecom_bot",
            "app": "main",
            "token": VECTOR_TOKEN,
            "encoding_aes_key": VECTOR_AES_KEY,
        },
        "web-chat": web_bot(),
    }


def write_config(
    tmp_path: Path, dify: DifyEmulator, bots: dict[str, Any], apps: dict[str, Any]
) -> Path:
    tree = {
        "store": f"sqlite:///{tmp_path / 'never-opened.db'}",
        "dify": {
            "apps": {
                name: {"base_url": dify.base_url, "api_key": dify.api_key, **extra}
                for name, extra in apps.items()
            }
        },
        "bots": bots,
        "routes": [{"match": {"bot": "wecom-it"}, "inputs": {"team": "IT"}}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def secrets_of(path: Path) -> list[str]:
    tree = yaml.safe_load(path.read_text())
    found = [tree["dify"]["apps"][name]["api_key"] for name in tree["dify"]["apps"]]
    secret_keys = (
        "bot_token", "app_token", "signing_secret", "app_secret", "secret", "token",
        "encoding_aes_key", "client_secret",
    )  # fmt: skip
    for bot in tree["bots"].values():
        found += [bot[key] for key in secret_keys if key in bot]
    return found


async def probe(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    status = await asyncio.to_thread(main, ["check", "--probe", "--config", str(path)])
    out, err = capsys.readouterr()
    table = out.split("\n\n", 1)[1].splitlines()
    return status, table, out + err


def row(table: list[str], subject: str, tried: str) -> str:
    (line,) = [line for line in table if line.startswith(subject) and f" {tried} " in line]
    return line


async def test_every_bot_and_app_is_tried_and_the_table_says_how_it_went(
    tmp_path: Path, dify: DifyEmulator, fakes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    dify.parameters["user_input_form"] = [
        {"text-input": {"variable": "team", "label": "Team", "required": True}},
    ]
    path = write_config(tmp_path, dify, bots(fakes), {"main": {}})
    status, table, everything = await probe(path, capsys)
    assert status == 0, everything
    assert table[0].split() == ["bot", "or", "app", "tried", "result", "detail"]
    assert "team T111, bot user UBOT" in row(table, "bot slack-main", "auth.test")
    assert " ok " in row(table, "bot slack-main", "apps.connections.open")
    assert "bot Helper" in row(table, "bot feishu-hr", "bot/v3/info")
    assert " ok " in row(table, "bot feishu-hr", "tenant_access_token")
    assert "app HR helper" in row(table, "bot wecom-it", "agent/get")
    assert " ok " in row(table, "bot dingtalk-ops", "oauth2/accessToken")
    assert " ok " in row(table, "bot dingtalk-ops", "gateway/connections/open")
    assert " skipped " in row(table, "bot wecom-ai", "aibot_subscribe")
    assert " skipped " in row(table, "bot web-chat", "-")
    assert "Emulated app (mode advanced-chat)" in row(table, "app main", "/info")
    assert " ok " in row(table, "app main", "/parameters")
    assert not [line for line in table if "required inputs" in line]  # a route gives `team`
    assert everything.rstrip().endswith("probe OK")
    # Only what a probe may do: no message sent, no long connection opened.
    assert not fakes["slack"].messages and not fakes["feishu"].messages
    assert fakes["dingtalk"].connections == 0 and not fakes["wecom"].sent
    assert not (tmp_path / "never-opened.db").exists()


async def test_a_failure_exits_1_names_the_error_and_prints_no_secret(
    tmp_path: Path, dify: DifyEmulator, fakes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    dify.parameters["user_input_form"] = [
        {"text-input": {"variable": "department", "label": "Dept", "required": True}},
        {"paragraph": {"variable": "notes", "label": "Notes", "required": False}},
    ]
    configured = bots(fakes)
    configured["slack-main"]["bot_token"] = "xoxb-wrong-0123456789"
    configured["feishu-hr"]["app_secret"] = "wrong-feishu-secret"
    configured["dingtalk-ops"]["client_secret"] = "wrong-dingtalk-secret"
    apps = {"main": {}, "old": {"api_key": "app-wrong-key-0123456789"}}
    path = write_config(tmp_path, dify, configured, apps)
    status, table, everything = await probe(path, capsys)
    assert status == 1
    assert "FAILED" in row(table, "bot slack-main", "auth.test")
    assert "invalid_auth" in row(table, "bot slack-main", "auth.test")
    assert "FAILED" in row(table, "bot feishu-hr", "tenant_access_token")
    assert not [line for line in table if "bot/v3/info" in line]  # not tried without a token
    assert "FAILED" in row(table, "bot dingtalk-ops", "oauth2/accessToken")
    assert " ok " in row(table, "bot wecom-it", "gettoken")  # the others are still tried
    assert "FAILED" in row(table, "app old", "/info")
    assert "FAILED" in row(table, "app old", "/parameters")
    warning = row(table, "app main", "required inputs")
    assert " warning " in warning and "department" in warning and "notes" not in warning
    assert "probe FAILED" in everything
    for secret in secrets_of(path):
        assert secret not in everything, secret


def test_check_without_probe_touches_no_network(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "dify": {"apps": {"main": {"api_key": "k", "base_url": "http://127.0.0.1:9"}}},
                "bots": {"web-chat": web_bot()},
            }
        )
    )
    assert main(["check", "--config", str(path)]) == 0
