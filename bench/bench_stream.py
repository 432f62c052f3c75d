"""Streaming: the gateway's own delay from a Dify SSE chunk to the platform call that carries
it, at 500 concurrent streams; and the memory cost of 2,000 concurrent streams.

    .venv/bin/python -m bench.bench_stream [--streams 500] [--memory-streams 2000]

Latency: the fake Dify stamps every chunk with the time it sent it (CLOCK_MONOTONIC, shared
by all processes); the fake Slack notes when each `chat.appendStream` arrives. The delay of an
update is its arrival minus the later of (a) the newest chunk it carries and (b) the moment the
contract's per-message pacing allowed it (the previous update + 0.25 s). So the throttle wait
is left out, and loopback network time is left in. The server runs with the bot-wide budget
lifted (`--unthrottled`): 500 answers at 4 updates a second is more than any Slack workspace
allows, which is the point of a load test, not a claim about Slack.

Reported twice: over every update, and once all streams run (from the moment the last stream
sent its first update): in the first second, hundreds of answers start at the same moment.

Memory: the server's RSS with 2,000 answers streaming at once, minus its RSS when idle after a
warm-up, divided by 2,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict

from bench.common import (
    LOAD_CPU,
    ROOT,
    free_port,
    percentile,
    pin,
    rss_kib,
    run_load,
    slack_events,
    start_server,
    wait_port,
)
from bench.fakes import BenchDify, BenchSlack

MIN_INTERVAL_S = 0.25  # Slack streaming pacing per message (README, "How it works": at most 4/s)


def delays_ms(slack: BenchSlack) -> tuple[list[float], list[float]]:
    """(every update's delay, the delays once every stream had started)."""
    by_message: dict[str, list[tuple[float, list[float]]]] = defaultdict(list)
    for arrived, stamps, ts in slack.updates:
        by_message[ts].append((arrived, stamps))
    # Steady state begins when the last stream's first update has arrived: before that,
    # hundreds of answers are still starting (posting, opening Dify streams) at once.
    steady_from = max(min(a for a, _ in updates) for updates in by_message.values())
    every: list[float] = []
    steady: list[float] = []
    for updates in by_message.values():
        updates.sort()
        previous = None
        for arrived, stamps in updates:
            allowed = max(stamps)
            if previous is not None:
                allowed = max(allowed, previous + MIN_INTERVAL_S)
            delay = max(0.0, arrived - allowed) * 1000
            every.append(delay)
            if arrived >= steady_from:
                steady.append(delay)
            previous = arrived
    return every, steady


def _summary(delays: list[float]) -> dict[str, float]:
    return {
        "updates": len(delays),
        "p50_ms": round(percentile(delays, 50), 1),
        "p95_ms": round(percentile(delays, 95), 1),
        "p99_ms": round(percentile(delays, 99), 1),
        "max_ms": round(max(delays), 1),
    }


async def run(streams: int, memory_streams: int) -> dict[str, object]:
    pin(LOAD_CPU)
    result: dict[str, object] = {}
    dify = BenchDify(chunks=20, delay=0.3, stamped=True)
    slack = BenchSlack()
    await dify.start()
    await slack.start()
    port = free_port()
    proc = start_server(
        "gateway",
        "--port",
        str(port),
        "--store",
        "memory",
        "--dify",
        dify.base_url,
        "--slack",
        slack.base_url,
        "--unthrottled",
    )
    try:
        await wait_port(port, "/readyz")
        # Warm-up: a few short answers, so pools and caches exist before measuring.
        dify.chunks, dify.delay = 2, 0.0
        slack.reset(expect=50)
        await run_load(port, slack_events(50, prefix="warm"), 8)
        await asyncio.wait_for(slack.done.wait(), 60)
        await asyncio.sleep(2)
        idle_kib = rss_kib(proc.pid)

        # 1. Latency at `streams` concurrent streams: 20 chunks 0.3 s apart, so ~6 s each.
        dify.chunks, dify.delay = 20, 0.3
        slack.reset(expect=streams)
        load = await run_load(port, slack_events(streams, prefix="lat"), 32)
        await asyncio.wait_for(slack.done.wait(), 120)
        every, steady = delays_ms(slack)
        result["latency"] = {
            "streams": streams,
            "ack_p99_ms": load.summary()["p99_ms"],
            "all_updates": _summary(every),
            "once_all_streams_run": _summary(steady),
        }
        await asyncio.sleep(3)

        # 2. Memory at `memory_streams` concurrent streams: long answers, measured mid-stream.
        dify.chunks, dify.delay = 60, 0.5
        slack.reset(expect=memory_streams)
        await run_load(port, slack_events(memory_streams, prefix="mem"), 32)
        await asyncio.sleep(8)  # every stream is open and has sent updates
        open_streams = 50 + streams + memory_streams - dify.requests_done
        peak_kib = rss_kib(proc.pid)
        result["memory"] = {
            "streams": memory_streams,
            "open_streams_at_reading": open_streams,
            "idle_rss_mib": round(idle_kib / 1024, 1),
            "rss_mib": round(peak_kib / 1024, 1),
            "kib_per_stream": round((peak_kib - idle_kib) / max(1, open_streams), 1),
        }
        await asyncio.wait_for(slack.done.wait(), 180)
        result["memory"]["all_answered"] = slack.finals >= memory_streams  # type: ignore[index]
    finally:
        proc.kill()  # answers may still be streaming; their grace period is not measured here
        proc.wait()
        await dify.stop()
        await slack.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--memory-streams", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(run(args.streams, args.memory_streams))
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"stream-{int(time.time())}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
