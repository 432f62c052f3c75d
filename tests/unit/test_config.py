"""Config: the example loads, interpolation works, and every mistake names its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parents[2] / "config" / "gateway.example.yaml"
ENV = {name: f"value-of-{name}" for name in re.findall(r"\$\{([A-Z_]+)\}", EXAMPLE.read_text())}
ENV |= {"WECOM_AGENT_ID": "1000002", "WECOM_AES_KEY": "a" * 43, "WECOM_BOT_AES_KEY": "b" * 43}


def minimal(**overrides: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "dify": {"apps": {"main": {"api_key": "k"}}},
        "bots": {
            "slack-main": {
                "platform": "slack",
                "app": "main",
                "signing_secret": "s",
                "bot_token": "xoxb-1",
            }
        },
    }
    tree.update(overrides)
    return tree


def problems(tree: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(tree, env=env or {})
    return info.value.problems


def test_the_example_config_loads_with_its_environment() -> None:
    config = load_config(EXAMPLE, env=ENV)
    assert set(config.bots) == {
        "slack-main",
        "feishu-hr",
        "wecom-it",
        "wecom-ai",
        "ding-sales",
        "web-chat",
    }
    assert config.bots["wecom-it"].agent_id == 1000002  # type: ignore[union-attr]
    assert config.bots["feishu-hr"].resolved_api_base == "https://open.feishu.cn"
    assert config.store == "sqlite:///dify-gateway.db"
    assert config.server.port == 8080


def test_defaults() -> None:
    config = parse_config(minimal(), env={})
    assert config.server.max_body_bytes == 1_048_576
    assert config.server.shutdown_grace_s == 30
    assert config.server.max_concurrent_answers == 4096
    assert config.dify.apps["main"].base_url == "https://api.dify.ai/v1"
    assert config.dify.apps["main"].mode == "chat"
    assert config.bots["slack-main"].resolved_api_base == "https://slack.com/api"


def test_interpolation_keeps_strings_and_converts_where_the_schema_wants() -> None:
    tree = minimal(server={"port": "${PORT:-9000}"})
    tree["dify"]["apps"]["main"]["api_key"] = "${KEY}"
    tree["bots"]["slack-main"]["signing_secret"] = "prefix-${SECRET}-suffix"
    config = parse_config(tree, env={"KEY": "0123", "SECRET": "a:b#c"})
    assert config.server.port == 9000
    assert config.dify.apps["main"].api_key.get_secret_value() == "0123"
    assert config.bots["slack-main"].signing_secret.get_secret_value() == "prefix-a:b#c-suffix"  # type: ignore[union-attr]


def test_an_unset_variable_is_an_error_naming_it_and_its_key() -> None:
    tree = minimal()
    tree["bots"]["slack-main"]["bot_token"] = "${SLACK_BOT_TOKEN}"
    assert problems(tree) == [
        "bots.slack-main.bot_token: environment variable SLACK_BOT_TOKEN is not set"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t["bots"]["slack-main"].pop("bot_token"),
            "bots.slack-main.bot_token: field required",
        ),
        (
            lambda t: t["bots"]["slack-main"].update(bot_tokn="x"),
            "bots.slack-main.bot_tokn: unknown key",
        ),
        (lambda t: t.update(server={"prot": 1}), "server.prot: unknown key"),
        (
            lambda t: t["bots"]["slack-main"].update(app="nope"),
            "bots.slack-main.app: no Dify app named 'nope'",
        ),
        (
            lambda t: t["bots"]["slack-main"].update(platform="teams"),
            "bots.slack-main: unknown platform 'teams'",
        ),
        (
            lambda t: t["bots"]["slack-main"].pop("signing_secret"),
            "bots.slack-main.signing_secret: required when mode is events",
        ),
        (
            lambda t: t["bots"]["slack-main"].update(mode="socket"),
            "bots.slack-main.app_token: required when mode is socket",
        ),
        (lambda t: t.update(store="postgres://x"), "store: must be memory://"),
        (lambda t: t.update(server={"port": "eighty"}), "server.port: input should be a valid"),
        (
            lambda t: t.update(routes=[{"match": {"bot": "ghost"}}]),
            "routes[0].match.bot: no bot named 'ghost'",
        ),
        (
            lambda t: t.update(routes=[{"inputs": {"who": "{email}"}}]),
            "routes[0].inputs.who: unknown field {email}",
        ),
        (lambda t: t.update(routes=[{"scope": "team"}]), "routes[0].scope: input should be"),
        (
            lambda t: t["dify"]["apps"]["main"].update(base_url="api.dify.ai"),
            "dify.apps.main.base_url: must be an http:// or https:// URL",
        ),
    ],
)
def test_each_mistake_names_the_key(change: Any, expected: str) -> None:
    tree = minimal()
    change(tree)
    found = problems(tree)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("bot", "expected"),
    [
        (
            {"platform": "feishu", "app": "main", "app_id": "cli_1"},
            "bots.b.app_secret: field required",
        ),
        (
            {"platform": "feishu", "app": "main", "app_id": "cli_1", "app_secret": "s"},
            "bots.b.verification_token: required when mode is webhook",
        ),
        (
            {
                "platform": "wecom",
                "app": "main",
                "corp_id": "ww1",
                "agent_id": 1,
                "secret": "s",
                "token": "t",
                "encoding_aes_key": "short",
            },
            "bots.b.encoding_aes_key: must be the 43",
        ),
        (
            {"platform": "wecom_bot", "app": "main", "mode": "websocket"},
            "bots.b.bot_id: required when mode is websocket",
        ),
        (
            {"platform": "dingtalk", "app": "main", "client_id": "ding1"},
            "bots.b.client_secret: field required",
        ),
    ],
)
def test_platform_requirements_name_the_key(bot: dict[str, Any], expected: str) -> None:
    found = problems(minimal(bots={"b": bot}))
    assert any(p.startswith(expected) for p in found), found


def test_long_connection_modes_need_fewer_keys() -> None:
    bots = {
        "fs": {
            "platform": "feishu",
            "app": "main",
            "mode": "websocket",
            "app_id": "cli_1",
            "app_secret": "s",
        },
        "wb": {
            "platform": "wecom_bot",
            "app": "main",
            "mode": "websocket",
            "bot_id": "b",
            "secret": "s",
        },
        "dt": {"platform": "dingtalk", "app": "main", "client_id": "d", "client_secret": "s"},
        "sl": {
            "platform": "slack",
            "app": "main",
            "mode": "socket",
            "bot_token": "xoxb",
            "app_token": "xapp",
        },
    }
    config = parse_config(minimal(bots=bots), env={})
    assert not any(bot.serves_webhook for bot in config.bots.values())


def test_each_platform_has_a_default_locale_and_a_bot_may_choose() -> None:
    bots = {
        "sl": {"platform": "slack", "app": "main", "signing_secret": "s", "bot_token": "x"},
        "fs": {"platform": "feishu", "app": "main", "app_id": "a", "app_secret": "s"},
        "lk": {"platform": "lark", "app": "main", "app_id": "a", "app_secret": "s"},
        "wc": {
            "platform": "wecom",
            "app": "main",
            "corp_id": "c",
            "agent_id": 1,
            "secret": "s",
            "token": "t",
            "encoding_aes_key": "a" * 43,
        },
        "wb": {"platform": "wecom_bot", "app": "main", "token": "t", "encoding_aes_key": "b" * 43},
        "dt": {"platform": "dingtalk", "app": "main", "client_id": "d", "client_secret": "s"},
    }
    for bot in ("fs", "lk"):
        bots[bot] |= {"verification_token": "v"}
    config = parse_config(minimal(bots=bots), env={})
    locales = {name: bot.resolved_locale for name, bot in config.bots.items()}
    assert locales == {
        "sl": "en",
        "fs": "zh-CN",
        "lk": "en",
        "wc": "zh-CN",
        "wb": "zh-CN",
        "dt": "zh-CN",
    }
    bots["fs"] |= {"locale": "en"}
    bots["sl"] |= {"locale": "zh-CN"}
    config = parse_config(minimal(bots=bots), env={})
    assert config.bots["fs"].resolved_locale == "en"
    assert config.bots["sl"].resolved_locale == "zh-CN"


@pytest.mark.parametrize("locale", ["fr", "zh", "zh_CN", "EN", ""])
def test_an_unknown_locale_names_the_key(locale: str) -> None:
    bot = {
        "platform": "slack",
        "app": "main",
        "signing_secret": "s",
        "bot_token": "x",
        "locale": locale,
    }
    found = problems(minimal(bots={"helpdesk": bot}))
    assert found == ["bots.helpdesk.locale: input should be 'en' or 'zh-CN'"]


def test_yaml_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  port: [8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "line" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml", env={})
    assert "cannot read" in info.value.problems[0]


def test_check_prints_bots_and_routes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "slack-main: platform=slack mode=events webhook=POST /webhooks/slack-main" in out
    assert "ding-sales: platform=dingtalk mode=stream webhook=none (long connection)" in out
    assert "[0] match bot=slack-main chat=C0123ABC -> app=it-helpdesk scope=thread" in out
    assert "config OK" in out


def test_check_exits_1_with_the_key_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "dify:\n  apps:\n    main: {api_key: k}\nbots:\n  feishu-hr:\n"
        "    platform: feishu\n    app: main\n    app_id: cli_1\n"
    )
    assert main(["check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "bots.feishu-hr.app_secret: field required" in err
    assert "Traceback" not in err


def web(**keys: Any) -> dict[str, Any]:
    return {"platform": "web", "app": "main", **keys}


def test_a_web_bot_signs_tokens_by_default_and_speaks_english() -> None:
    config = parse_config(minimal(bots={"chat": web(signing_secret="s" * 32)}), env={})
    bot = config.bots["chat"]
    assert bot.auth == "token"  # type: ignore[union-attr]
    assert bot.messages_per_minute == 20  # type: ignore[union-attr]
    assert bot.resolved_locale == "en"
    assert not bot.serves_webhook


@pytest.mark.parametrize(
    ("bot", "expected"),
    [
        (web(), "bots.chat.signing_secret: required when auth is token"),
        (web(auth="token"), "bots.chat.signing_secret: required when auth is token"),
        (
            web(signing_secret="short"),
            "bots.chat.signing_secret: must be at least 16 characters"
            " (e.g. `openssl rand -hex 32`)",
        ),
        (web(auth="open"), "bots.chat.auth: input should be 'token' or 'none'"),
        (
            web(auth="none", messages_per_minute=0),
            "bots.chat.messages_per_minute: input should be greater than or equal to 1",
        ),
    ],
)
def test_web_bot_mistakes_name_the_key(bot: dict[str, Any], expected: str) -> None:
    assert problems(minimal(bots={"chat": bot})) == [expected]


def test_check_lists_web_bots_with_their_paths_and_warns_about_auth_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "dify:\n  apps:\n    main: {api_key: k}\nbots:\n"
        "  site: {platform: web, app: main, signing_secret: 0123456789abcdef0123}\n"
        "  demo: {platform: web, app: main, auth: none}\n"
    )
    assert main(["check", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    assert (
        "site: platform=web auth=token page=GET /chat/site socket=GET /chat/site/ws app=main"
        in captured.out
    )
    assert "demo: platform=web auth=none page=GET /chat/demo" in captured.out
    assert "warning: bots.demo.auth is none" in captured.err
    assert "bots.site" not in captured.err
    assert "config OK" in captured.out


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://:pw@redis.internal:6380/2",
        "redis+cluster://10.0.0.1:7000",
        "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002/0",
        "rediss+cluster://user:pw@node-1:7000,node-2:7000/?ssl_cert_reqs=required",
    ],
)
def test_redis_and_redis_cluster_store_urls(url: str) -> None:
    assert parse_config(minimal(store=url), env={}).store == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+cluster://", "store: a Redis Cluster URL lists its nodes as host:port"),
        ("redis+cluster://:s3cret@node-1", "store: a Redis Cluster URL lists its nodes"),
        ("redis+cluster://node-1:7000,node-2", "store: a Redis Cluster URL lists its nodes"),
        ("redis+cluster://node-1:70000", "store: a Redis Cluster URL lists its nodes"),
        ("redis+cluster://:s3cret@node-1:7000/2", "store: a Redis Cluster has only database 0"),
        ("redis-cluster://node-1:7000", "store: must be memory://"),
    ],
)
def test_a_wrong_cluster_url_is_named_without_its_password(url: str, expected: str) -> None:
    found = problems(minimal(store=url))
    assert any(p.startswith(expected) for p in found), found
    assert not any("s3cret" in p for p in found)
