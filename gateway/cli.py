"""`dify-gateway serve | check | demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from gateway.config import Config, ConfigError, default_config_path, load_config


def _load(path: str | None) -> Config:
    return load_config(path or default_config_path())


def describe(config: Config) -> list[str]:
    """What `check` prints: every bot and every route."""
    lines = [f"store: {config.store.split('://')[0]}", "bots:"]
    if not config.bots:
        lines.append("  (none)")
    for name, bot in config.bots.items():
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


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    for line in describe(config):
        print(line)
    print("config OK")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import serve
    from gateway.logs import config_secrets, setup_logging

    config = _load(args.config)
    setup_logging(os.environ.get("LOG_LEVEL", "INFO").upper(), config_secrets(config))
    asyncio.run(serve(config))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return asyncio.run(run_demo(question=args.question))


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
    demo = sub.add_parser("demo", help="run the whole path locally, no accounts needed")
    demo.add_argument("--question", default=None, help="what the demo user asks")
    args = parser.parse_args(argv)
    handlers = {"serve": _serve, "check": _check, "demo": _demo}
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
