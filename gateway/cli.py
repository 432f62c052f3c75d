"""`dify-gateway serve | check | schema | demo`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway.config import Config, ConfigError, WebBot, default_config_path, load_config

# A `${VAR}` or `${VAR:-default}` reference, as gateway/config.py fills it in.
PLACEHOLDER = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
# Keys that tell which model applies (`bots.<name>.platform`): a placeholder there would make
# every bot model match, so it stays a fixed value.
_DISCRIMINATORS = frozenset({"platform"})


def _load(path: str | None) -> Config:
    return load_config(path or default_config_path())


def describe(config: Config) -> list[str]:
    """What `check` prints: every bot and every route."""
    lines = [f"store: {config.store.split('://')[0]}", "bots:"]
    if not config.bots:
        lines.append("  (none)")
    for name, bot in config.bots.items():
        if isinstance(bot, WebBot):
            page, socket = WebBot.paths(name)
            lines.append(
                f"  {name}: platform=web auth={bot.auth} page=GET {page} "
                f"socket=GET {socket} app={bot.app}"
            )
            continue
        hook = f"POST /webhooks/{name}" if bot.serves_webhook else "none (long connection)"
        lines.append(
            f"  {name}: platform={bot.platform} mode={bot.mode_name} webhook={hook} app={bot.app}"
        )
    lines.append("routes:")
    if not config.routes:
        lines.append("  (none: every bot answers with its own app)")
    for i, route in enumerate(config.routes):
        keys = " ".join(f"{k}={v}" for k, v in route.match.keys().items()) or "(everything)"
        app = route.app or "(the bot's app)"
        scope = route.scope or "default"
        lines.append(
            f"  [{i}] match {keys} -> app={app} scope={scope} "
            f"require_mention={str(route.require_mention).lower()}"
        )
    return lines


def warnings(config: Config) -> list[str]:
    """What `check` warns about: valid, but maybe not what was meant."""
    return [
        f"warning: bots.{name}.auth is none: anyone who can reach {WebBot.paths(name)[0]} "
        "may chat, as any user id. Use it for demos and trusted networks only."
        for name, bot in config.bots.items()
        if isinstance(bot, WebBot) and bot.auth == "none"
    ]


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for line in describe(config):
        print(line)
    for line in warnings(config):
        print(line, file=sys.stderr)
    print("config OK")
    if not args.probe:
        return 0
    from gateway import probe

    rows = asyncio.run(probe.probe(config))
    print()
    for line in probe.table(rows):
        print(line)
    if probe.failed(rows):
        print("probe FAILED: see the rows above", file=sys.stderr)
        return 1
    print("probe OK")
    return 0


def config_schema() -> dict[str, Any]:
    """The config's JSON Schema (draft 2020-12), from the pydantic models, for editors.

    Two changes to what pydantic generates, both so an editor judges the file as the gateway
    will: secrets are plain strings (pydantic marks them `format: password`, `writeOnly`,
    which editors take as "never shown"), and a value that must be a number, a boolean or one
    of a fixed set may also be a `${VAR}` reference, because the gateway substitutes it
    before it validates (`port: ${PORT:-8080}`).
    """
    schema = Config.model_json_schema()
    _plain_secrets(schema)
    _allow_placeholders(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dify-gateway config (gateway.yaml)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _plain_secrets(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("format") == "password":
            del node["format"]
            node.pop("writeOnly", None)
        for value in node.values():
            _plain_secrets(value)
    elif isinstance(node, list):
        for value in node:
            _plain_secrets(value)


def _typed(node: dict[str, Any]) -> bool:
    """True for a schema that a `${VAR}` string would fail: numbers, booleans, enums."""
    return node.get("type") in ("integer", "number", "boolean") or "enum" in node


def _allow_placeholders(node: Any) -> None:
    if isinstance(node, list):
        for value in node:
            _allow_placeholders(value)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        _allow_placeholders(value)
        if key != "properties" or not isinstance(value, dict):
            continue
        for name, prop in value.items():
            if name in _DISCRIMINATORS or not isinstance(prop, dict):
                continue
            variants = prop.get("anyOf", [prop])
            if any(isinstance(v, dict) and _typed(v) for v in variants):
                value[name] = _with_placeholder(prop)


def _with_placeholder(prop: dict[str, Any]) -> dict[str, Any]:
    """`prop`, or a string holding a `${VAR}` reference; keeps its title and default."""
    outer: dict[str, Any] = {k: prop[k] for k in ("title", "default") if k in prop}
    inner = {k: v for k, v in prop.items() if k not in outer}
    variants = inner["anyOf"] if set(inner) == {"anyOf"} else [inner]
    return {**outer, "anyOf": [*variants, {"type": "string", "pattern": PLACEHOLDER}]}


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve
    from gateway.logs import config_secrets, setup_logging

    path = args.config or default_config_path()
    config = load_config(path)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()

    def configure_logging(config: Config) -> None:
        # Again after each reload: new bots bring new secrets to mask.
        setup_logging(level, config_secrets(config), config.logging.format)

    configure_logging(config)
    asyncio.run(serve(config, config_path=path, on_config=configure_logging))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    # In a terminal the demo ends with a chat to try; piped or scripted it just ends.
    web = args.web if args.web is not None else sys.stdin.isatty() and sys.stdout.isatty()
    return asyncio.run(run_demo(question=args.question, web=web, port=args.port))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dify-gateway", description="Put Dify apps into team chat."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("serve", "run the gateway"),
        ("check", "validate the config and print bots and routes"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument(
            "--config", help="config file (default: $DIFY_GATEWAY_CONFIG or config/gateway.yaml)"
        )
        if name == "check":
            cmd.add_argument(
                "--probe",
                action="store_true",
                help="also try every bot's credentials and every Dify app over the network",
            )
    sub.add_parser("schema", help="print the config's JSON Schema (for editors)")
    demo = sub.add_parser("demo", help="run the whole path locally, no accounts needed")
    demo.add_argument("--question", default=None, help="what the demo user asks")
    demo.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then serve the web chat until Ctrl-C (default: when run in a terminal)",
    )
    demo.add_argument("--port", type=int, default=0, help="the demo's port (default: a free one)")
    args = parser.parse_args(argv)
    handlers = {"serve": _serve, "check": _check, "schema": _schema, "demo": _demo}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print("config error:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
