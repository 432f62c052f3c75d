"""Every event answered, end to end, through the durable inbox: 4,000 signed Slack DMs in 500
conversations at 32 connections, until the last answer is final in the Slack fake.

    .venv/bin/python -m bench.bench_answer [--events 4000] [--conversations 500]

Variants, measured in one run:
- `sqlite`: one gateway on the SQLite store (the single-instance default);
- `redis-2`: two gateways on one Redis with AOF `appendfsync always` (the production shape),
  the load spread over both (as a load balancer would).

Both gateway processes of `redis-2` share the server core, so the pair is measured on the
same CPU budget as the single instance. The burst starts once every instance holds its fair
share of the inbox's shards. Reported: answered/s from the first request to the last final
answer, acks/s, the ack p99, and what each answer cost, which a loaded machine does not
change: the gateways' CPU milliseconds and, on Redis, the commands Redis ran (those inside
Lua scripts included) and the requests it read (round trips: a pipeline is one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from typing import Any

import redis.asyncio as aioredis

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

SHARDS = 16  # the gateway's default (`store_options.shards`)
LEASE_PREFIX = "dify-gateway:{inbox:"


async def shares_held(url: str, instances: int, within: float = 30.0) -> None:
    """Wait until every shard's lease is held and each instance holds its fair share, so the
    burst measures the instances working together, not one of them waiting for shards."""
    fair = -(-SHARDS // instances)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            owners = await client.mget([f"{LEASE_PREFIX}{n}}}:lease" for n in range(SHARDS)])
            held: dict[str, int] = {}
            for owner in owners:
                if owner is not None:
                    held[owner] = held.get(owner, 0) + 1
            everyone = len(held) == instances and sum(held.values()) == SHARDS
            if everyone and max(held.values()) <= fair:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the instances did not share the shards within {within:.0f}s")
    finally:
        await client.aclose()


async def inbox_empty(url: str, within: float = 30.0) -> None:
    """Wait until every answered job is out of the inbox (its last store call is done)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            lengths = [await client.xlen(f"{LEASE_PREFIX}{n}}}:jobs") for n in range(SHARDS)]
            if not any(lengths):
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def redis_counts(url: str) -> dict[str, int]:
    """Commands Redis has run (Lua's included) and read events (requests) it has handled."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        commands = await client.info("commandstats")
        stats = await client.info("stats")
    finally:
        await client.aclose()
    counts = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()}
    return {
        **counts,
        "commands": sum(counts.values()),
        "reads": int(stats["total_reads_processed"]),
    }


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
        redis_url = stores[0] if stores[0].startswith("redis") else None
        if redis_url is not None:
            await shares_held(redis_url, len(stores))
        warm = slack_events(200, prefix=f"w{time.monotonic_ns()}", conversations=50)
        slack.reset(expect=len(warm))
        await run_load(ports[0], warm, 8)
        await asyncio.wait_for(slack.done.wait(), 60)
        events = slack_events(
            args.events, prefix=f"m{time.monotonic_ns()}", conversations=args.conversations
        )
        slack.reset(expect=len(events))
        share = len(events) // len(ports)
        pids = [proc.pid for proc in procs]
        counts_before = await redis_counts(redis_url) if redis_url else {}
        cpu_before = cpu_seconds(pids)
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
        if redis_url is not None:
            await inbox_empty(redis_url)
        cpu_ms = (cpu_seconds(pids) - cpu_before) * 1000
        costs = {"cpu_ms_per_answer": round(cpu_ms / slack.finals, 3)}
        if redis_url is not None:
            counts = await redis_counts(redis_url)
            # Both counts include the few commands of the two readings themselves.
            for what in ("commands", "reads"):
                spent = counts[what] - counts_before[what]
                costs[f"redis_{what}_per_answer"] = round(spent / slack.finals, 2)
            mix = {
                name: round((n - counts_before.get(name, 0)) / slack.finals, 2)
                for name, n in counts.items()
                if name not in ("commands", "reads")
            }
            costs["redis_command_mix"] = {name: n for name, n in mix.items() if n >= 0.05}
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
            **costs,
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
    parser.add_argument("--only", choices=["sqlite", "redis-2"], help="run one variant")
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
            if args.only in (None, "sqlite"):
                results["sqlite"] = await answer_all([sqlite], args, dify, slack)
                print(f"sqlite   {results['sqlite']}", flush=True)
            if args.only in (None, "redis-2"):
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
