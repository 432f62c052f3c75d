"""`dify-gateway schema`: the config's JSON Schema, for editors. It must accept what the
gateway accepts (the example config, raw or filled in) and reject what it rejects."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.cli import config_schema, main
from gateway.config import ConfigError, parse_config

EXAMPLE = Path(__file__).parents[2] / "config" / "gateway.example.yaml"
DUMMIES = {"WECOM_AGENT_ID": "1000002", "WECOM_AES_KEY": "a" * 43, "WECOM_BOT_AES_KEY": "b" * 43}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _dummy(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    if default is not None:
        return default
    return DUMMIES.get(name, f"dummy-{name.lower()}")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return config_schema()


@pytest.fixture
def filled_example() -> dict[str, Any]:
    """The example with every `${VAR}` replaced in the text, as a hand-written file looks."""
    tree = yaml.safe_load(_REFERENCE.sub(_dummy, EXAMPLE.read_text()))
    assert isinstance(tree, dict)
    return tree


def errors(schema: dict[str, Any], tree: Any) -> list[str]:
    """Every error, with those inside `oneOf`/`anyOf` branches (how a bot's keys are checked)."""
    found: list[str] = []
    pending = list(jsonschema.Draft202012Validator(schema).iter_errors(tree))
    while pending:
        error = pending.pop()
        found.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message}")
        pending.extend(error.context or [])
    return found


def test_the_command_prints_a_valid_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(printed["properties"]) == {
        "server",
        "store",
        "logging",
        "inbox",
        "dify",
        "bots",
        "routes",
    }
    assert printed["required"] == ["dify"]
    assert printed["additionalProperties"] is False
    assert {"SlackBot", "FeishuBot", "WecomBot", "WecomAIBot", "DingtalkBot"} <= set(
        printed["$defs"]
    )


def test_secrets_are_plain_strings(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "password" not in text and "writeOnly" not in text
    assert schema["$defs"]["DifyApp"]["properties"]["api_key"] == {
        "title": "Api Key",
        "type": "string",
    }
    token = schema["$defs"]["FeishuBot"]["properties"]["verification_token"]
    assert {"type": "string"} in token["anyOf"] and {"type": "null"} in token["anyOf"]


def test_the_filled_in_example_validates(
    schema: dict[str, Any], filled_example: dict[str, Any]
) -> None:
    assert errors(schema, filled_example) == []
    parse_config(filled_example, env={})  # and the gateway agrees


def test_the_raw_example_validates_with_its_references(schema: dict[str, Any]) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert raw["server"]["port"] == "${PORT:-8080}"  # a string where a number goes
    assert errors(schema, raw) == []


@pytest.mark.parametrize(
    ("where", "key"),
    [((), "colour"), (("server",), "colour"), (("bots", "slack-main"), "colour")],
)
def test_an_unknown_key_is_rejected_as_by_the_gateway(
    schema: dict[str, Any], filled_example: dict[str, Any], where: tuple[str, ...], key: str
) -> None:
    node = filled_example
    for step in where:
        node = node[step]
    node[key] = "blue"
    where_path = "/".join(where)
    assert f"{where_path}: Additional properties are not allowed ('colour' was unexpected)" in (
        errors(schema, filled_example)
    )
    with pytest.raises(ConfigError, match="colour: unknown key"):
        parse_config(filled_example, env={})


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("server", "port"), "eighty"),  # neither a number nor a ${VAR}
        (("server", "port"), 70000),
        (("dify", "apps", "helpdesk", "mode"), "chatbot"),
        (("routes", 0, "scope"), "channel"),
        (("routes", 0, "require_mention"), "maybe"),
        (("bots", "slack-main", "mode"), "rtm"),
        (("bots", "slack-main", "platform"), "teams"),
        (("bots", "slack-main", "platform"), "${PLATFORM}"),  # picks the model: stays fixed
        (("dify", "apps"), {}),
    ],
)
def test_wrong_values_are_rejected(
    schema: dict[str, Any], filled_example: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    tree = copy.deepcopy(filled_example)
    node = tree
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert errors(schema, tree) != []


def test_a_missing_required_key_is_rejected(
    schema: dict[str, Any], filled_example: dict[str, Any]
) -> None:
    del filled_example["dify"]["apps"]["hr"]["api_key"]
    assert errors(schema, filled_example) != []
    del filled_example["dify"]
    assert any("'dify' is a required property" in e for e in errors(schema, filled_example))


def test_references_are_accepted_for_typed_values(schema: dict[str, Any]) -> None:
    tree = {
        "server": {"port": "${PORT}", "shutdown_grace_s": "${GRACE:-30}"},
        "dify": {"apps": {"a": {"api_key": "${KEY}", "mode": "${MODE:-chat}"}}},
        "routes": [{"require_mention": "${MENTION:-true}", "scope": "${SCOPE}"}],
    }
    assert errors(schema, tree) == []
    tree["server"]["port"] = "${1PORT}"  # not a variable name
    assert errors(schema, tree) != []
