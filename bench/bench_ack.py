"""Webhook ack throughput: 2,000 signed Slack events at 32 concurrent connections, against a
bare aiohttp handler, slack_bolt's AsyncApp and dify-gateway (memory and SQLite stores), in
one run, as ratios. The gateway also answers every event end to end (Dify fake -> Slack fake).

    .venv/bin/python -m bench.bench_ack [--rounds 3] [--events 2000] [--concurrency 32]
        [--redis redis://127.0.0.1:6379/15]   # adds gateway-redis (the database is flushed)
        [--redis-aof]   # adds gateway-redis on a redis-server of its own, AOF appendfsync always

Each variant runs `rounds` times, interleaved, and the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import time
from typing import Any

from bench.common import (
    LOAD_CPU,
    ROOT,
    RedisServer,
    free_port,
    pin,
    run_load,
    slack_events,
    start_server,
    wait_port,
)
from bench.fakes import BenchDify, BenchSlack

VARIANTS = ["bare", "bolt", "gateway-memory", "gateway-sqlite"]


async def one_round(
    variant: str,
    n: int,
    concurrency: int,
    dify: BenchDify,
    slack: BenchSlack,
    round_no: int,
    redis_url: str = "",
) -> dict[str, Any]:
    port = free_port()
    args = [variant.split("-")[0], "--port", str(port)]
    answering = variant.startswith("gateway")
    if answering:
        store = variant.split("-")[1]
        if store == "redis":
            await asyncio.to_thread(
                subprocess.run, ["redis-cli", "-u", redis_url, "flushdb"], check=True
            )
            store = redis_url
        args += [
            "--store",
            store,
            "--dify",
            dify.base_url,
            "--slack",
            slack.base_url,
        ]
    proc = start_server(*args)
    try:
        await wait_port(port, "/readyz" if answering else "/healthz")
        warm = slack_events(200, prefix=f"w{variant}{round_no}")
        slack.reset(expect=len(warm))
        await run_load(port, warm, concurrency)
        if answering:
            await asyncio.wait_for(slack.done.wait(), 60)
        requests = slack_events(n, prefix=f"m{variant}{round_no}")
        slack.reset(expect=n)
        load = await run_load(port, requests, concurrency)
        result: dict[str, Any] = {"variant": variant, **load.summary(), "statuses": load.statuses}
        if answering:
            await asyncio.wait_for(slack.done.wait(), 120)
            span = slack.last_final_at - load.started_at
            result["answered"] = slack.finals
            result["answered_per_second"] = round(slack.finals / span, 1)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"{variant}: the server did not exit within 30 s of SIGTERM", flush=True)
            proc.kill()
            proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default="", help="also measure a Redis store at this URL")
    parser.add_argument(
        "--redis-aof", action="store_true", help="also measure Redis with AOF appendfsync always"
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.redis_aof:
            args.redis = stack.enter_context(RedisServer(aof=True)).url
        await measure(args)


async def measure(args: argparse.Namespace) -> None:
    variants = [*VARIANTS, "gateway-redis"] if args.redis else VARIANTS
    pin(LOAD_CPU)
    dify, slack = BenchDify(chunks=3), BenchSlack()
    await dify.start()
    await slack.start()
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            for variant in variants:
                outcome = await one_round(
                    variant, args.events, args.concurrency, dify, slack, r, args.redis
                )
                rounds[variant].append(outcome)
                print(
                    f"round {r + 1} {variant:15s} {outcome['per_second']:8.0f} acks/s  "
                    f"p99 {outcome['p99_ms']:6.1f} ms"
                    + (
                        f"  answered {outcome['answered_per_second']:.0f}/s"
                        if "answered" in outcome
                        else ""
                    ),
                    flush=True,
                )
    finally:
        await dify.stop()
        await slack.stop()
    median = {
        v: sorted(rs, key=lambda o: o["per_second"])[len(rs) // 2] for v, rs in rounds.items()
    }
    bare = median["bare"]["per_second"]
    print(
        f"\n{'variant':16s}{'acks/s':>9s}{'x bare':>8s}{'x bolt':>8s}{'p50 ms':>8s}"
        f"{'p99 ms':>8s}{'answered/s':>12s}"
    )
    for v in variants:
        m = median[v]
        print(
            f"{v:16s}{m['per_second']:9.0f}{m['per_second'] / bare:8.2f}"
            f"{m['per_second'] / median['bolt']['per_second']:8.2f}{m['p50_ms']:8.1f}"
            f"{m['p99_ms']:8.1f}{m.get('answered_per_second', float('nan')):12.0f}"
        )
    spread = {
        v: round(statistics.pstdev([o["per_second"] for o in rs]), 1) for v, rs in rounds.items()
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    report = json.dumps({"median": median, "rounds": rounds, "stdev": spread}, indent=2)
    await asyncio.to_thread((out / f"ack-{int(time.time())}.json").write_text, report)


if __name__ == "__main__":
    asyncio.run(main())
