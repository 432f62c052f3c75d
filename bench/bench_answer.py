"""Every event answered, end to end, through the durable inbox: 4,000 signed Slack DMs in 500
conversations at 32 connections, until the last answer is final in the Slack fake.

    .venv/bin/python -m bench.bench_answer [--events 4000] [--conversations 500]

Variants, measured in one run:
- `sqlite`: one gateway on the SQLite store (the single-instance default);
- `redis-2`: two gateways on one Redis with AOF `appendfsync always` (the production shape),
  the load spread over both (as a load balancer would).

Both gateway processes of `redis-2` share the server core, so the pair is measured on the
same CPU budget as the single instance. Reported: answered/s from the first request to the
last final answer, acks/s, and the ack p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def answer_all(
    stores: list[str], args: argparse.Namespace, dify: BenchDify, slack: BenchSlack
) -> dict[str, Any]:
    ports = [free_port() for _ in stores]
    procs = [
        start_server(
            "gateway",
            "--port",
            str(p),
            "--store",
            s,
            "--dify",
            dify.base_url,
            "--slack",
            slack.base_url,
        )
        for p, s in zip(ports, stores, strict=True)
    ]
    try:
        for port in ports:
            await wait_port(port, "/readyz")
        warm = slack_events(200, prefix=f"w{time.monotonic_ns()}", conversations=50)
        slack.reset(expect=len(warm))
        await run_load(ports[0], warm, 8)
        await asyncio.wait_for(slack.done.wait(), 60)
        events = slack_events(
            args.events, prefix=f"m{time.monotonic_ns()}", conversations=args.conversations
        )
        slack.reset(expect=len(events))
        share = len(events) // len(ports)
        started = time.monotonic()
        loads = await asyncio.gather(
            *(
                run_load(
                    port,
                    events[i * share : (i + 1) * share if i < len(ports) - 1 else None],
                    args.concurrency // len(ports),
                )
                for i, port in enumerate(ports)
            )
        )
        await asyncio.wait_for(slack.done.wait(), 300)
        span = slack.last_final_at - started
        acks = sum(load.requests for load in loads)
        ack_seconds = max(load.seconds for load in loads)
        latencies = sorted(ms for load in loads for ms in load.latencies_ms)
        statuses: dict[int, int] = {}
        for load in loads:
            for status, count in load.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        return {
            "answered": slack.finals,
            "answered_per_second": round(slack.finals / span, 1),
            "acks_per_second": round(acks / ack_seconds, 1),
            "ack_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
            "statuses": statuses,
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    pin(LOAD_CPU)
    dify, slack = BenchDify(chunks=3), BenchSlack()
    await dify.start()
    await slack.start()
    results: dict[str, Any] = {}
    try:
        with RedisServer(aof=True) as redis:
            sqlite = f"sqlite:///{ROOT / 'bench' / 'results' / f'answer-{time.time_ns()}.db'}"
            (ROOT / "bench" / "results").mkdir(exist_ok=True)
            results["sqlite"] = await answer_all([sqlite], args, dify, slack)
            print(f"sqlite   {results['sqlite']}", flush=True)
            redis.flush()
            results["redis-2"] = await answer_all([redis.url, redis.url], args, dify, slack)
            print(f"redis-2  {results['redis-2']}", flush=True)
    finally:
        await dify.stop()
        await slack.stop()
    out = ROOT / "bench" / "results" / f"answer-{int(time.time())}.json"
    await asyncio.to_thread(out.write_text, json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
