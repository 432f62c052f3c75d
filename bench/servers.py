"""The servers under test, one per process, pinned to the server core.

    python -m bench.servers bare    --port P
    python -m bench.servers bolt    --port P
    python -m bench.servers gateway --port P --store memory|sqlite|redis://… --dify URL --slack URL
                                    [--unthrottled]

- bare: an aiohttp handler that reads the body and answers 200: the ceiling.
- bolt: slack_bolt's AsyncApp verifying the signature and acking (a no-op listener), the
  peer a Slack developer would pick.
- gateway: dify-gateway with the Slack adapter, acking *and* answering every event through
  the Dify fake and the Slack fake.
`--unthrottled` lifts the bot-wide update budgets (never the per-message minimum), for the
streaming benchmark, which measures the gateway's own delay and leaves out the throttle.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bench.common import BOT_TOKEN, SECRET, SERVER_CPU, pin

if TYPE_CHECKING:
    # Not imported at run time before --unthrottled has patched the Slack sink's pacing.
    from gateway.config import Config

Hook = Callable[[], None]  # run once the server is up (analysis hooks)


async def _on_startup(hook: Hook, app: web.Application) -> None:
    hook()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def bare_app() -> web.Application:
    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/bench", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def bolt_app() -> web.Application:
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.authorization import AuthorizeResult

    async def authorize(**_: Any) -> AuthorizeResult:
        # No network: the identity a real install would have.
        return AuthorizeResult(
            enterprise_id=None, team_id="T1", bot_user_id="UBOT", bot_id="BBOT", bot_token=BOT_TOKEN
        )

    bolt = AsyncApp(signing_secret=SECRET, authorize=authorize)

    @bolt.event("message")
    async def on_message() -> None:
        return None

    app = bolt.web_app(path="/webhooks/bench")
    app.router.add_get("/healthz", healthz)
    return app


def gateway_config(store: str, dify: str, slack: str, unthrottled: bool, port: int) -> Config:
    if unthrottled:
        import adapters.slack.sink as sink
        from gateway.platform import Pacing

        sink.STREAM_PACING = Pacing(0.25, "slack.appendStream", 1e9)
        sink.UPDATE_PACING = Pacing(1.0, "slack.update", 1e9)
        sink.START_STREAM_PER_SECOND = 1e9
        sink.START_STREAM_BURST = 1e9
    from gateway.config import parse_config

    url = "memory://"
    if store.startswith(("redis://", "rediss://")):
        url = store
    elif store == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-')) / 'gw.db'}"
    return parse_config(
        {
            "server": {"host": "127.0.0.1", "port": port},
            "store": url,
            "dify": {"apps": {"main": {"base_url": dify, "api_key": "bench-dify-key"}}},
            "bots": {
                "bench": {
                    "platform": "slack",
                    "app": "main",
                    "api_base": slack,
                    "signing_secret": SECRET,
                    "bot_token": BOT_TOKEN,
                }
            },
        },
        env={},
    )


async def serve_gateway(config: Config, startup: list[Hook]) -> None:
    """The gateway exactly as `dify-gateway serve` runs it, plus the analysis hooks."""
    from gateway.app import serve

    ready = asyncio.Event()
    serving = asyncio.create_task(serve(config, ready=ready))
    await ready.wait()
    for hook in startup:
        hook()
    await serving


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["bare", "bolt", "gateway"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--dify", default="")
    parser.add_argument("--slack", default="")
    parser.add_argument("--unthrottled", action="store_true")
    args = parser.parse_args()
    pin(SERVER_CPU)
    logging.basicConfig(level=logging.WARNING)
    startup: list[Hook] = []
    if os.environ.get("BENCH_TRACEMALLOC"):
        # BENCH_TRACEMALLOC=path,first_s,second_s: what was allocated between two moments.
        import tracemalloc

        tracemalloc.start(1)
        tpath, first, second = os.environ["BENCH_TRACEMALLOC"].split(",")
        snaps: list[Any] = []

        def snapshot() -> None:
            def take() -> None:
                snaps.append(tracemalloc.take_snapshot())
                if len(snaps) == 2:
                    stats = snaps[1].compare_to(snaps[0], "lineno")
                    Path(tpath).write_text("\n".join(str(s) for s in stats[:30]))

            loop = asyncio.get_running_loop()
            loop.call_later(float(first), take)
            loop.call_later(float(second), take)

        startup.append(snapshot)
    if os.environ.get("BENCH_PROFILE"):
        # BENCH_PROFILE=path,after_s,for_s: cProfile the server for a window, for analysis.
        import cProfile

        path, after, span = os.environ["BENCH_PROFILE"].split(",")
        profiler = cProfile.Profile()

        def window() -> None:
            loop = asyncio.get_running_loop()
            loop.call_later(float(after), profiler.enable)
            loop.call_later(
                float(after) + float(span), lambda: (profiler.disable(), profiler.dump_stats(path))
            )

        startup.append(window)
    if args.variant == "gateway":
        config = gateway_config(args.store, args.dify, args.slack, args.unthrottled, args.port)
        asyncio.run(serve_gateway(config, startup))
        return
    app = bare_app() if args.variant == "bare" else bolt_app()
    app.on_startup.extend(functools.partial(_on_startup, hook) for hook in startup)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    main()
