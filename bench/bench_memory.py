"""Memory after a burst: the gateway's RSS before, at the peak of, and after bursts of
5,000 queued answers, and where what stays goes (glibc's heap, pymalloc's arenas, live
objects, the gateway's tables).

    .venv/bin/python -m bench.bench_memory [--events 5000] [--bursts 2] [--store memory|sqlite]
        [--arena-max N]   # run the gateway with MALLOC_ARENA_MAX=N

The gateway runs in `bench/memory_probe.py` (exactly as `serve()` runs it, plus a stdin
command loop for the readings), pinned to its own core; the load and the fakes (Dify SSE,
Slack Web API) run here. Each burst is acked at 32 concurrent connections while the inbox
holds answers back (acks first), so the answers queue, then drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    BOT_TOKEN,
    LOAD_CPU,
    ROOT,
    SECRET,
    SERVER_CPU,
    free_port,
    pin,
    rss_kib,
    run_load,
    slack_events,
    wait_port,
)
from bench.fakes import BenchDify, BenchSlack

SETTLE_S = 5.0  # after a drain, before the reading: in-flight cleanup, a quiet full GC


class Probe:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        return dict(json.loads(line))


async def sample_peak(pid: int, stop: asyncio.Event) -> int:
    peak = 0
    while not stop.is_set():
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.02)
    return peak


async def burst(
    probe: Probe, port: int, slack: BenchSlack, n: int, prefix: str
) -> tuple[int, float, int]:
    """n events acked, then answered; (peak RSS KiB, seconds to drain, queued at the peak)."""
    stop = asyncio.Event()
    peak = asyncio.create_task(sample_peak(probe.proc.pid, stop))
    slack.reset(expect=n)
    load = await run_load(port, slack_events(n, prefix=prefix), 32)
    queued = await probe.ask("stats")
    started = time.monotonic()
    await asyncio.wait_for(slack.done.wait(), 600)
    drained = time.monotonic() - started
    stop.set()
    assert load.statuses == {200: n}, load.statuses
    return await peak, drained, int(queued.get("store_kept", queued.get("queue_live", -1)))


def config(
    store: str, dify: str, slack: str, port: int, workdir: Path, concurrent: int
) -> dict[str, Any]:
    url = "memory://" if store == "memory" else f"sqlite:///{workdir / 'gw.db'}"
    return {
        "server": {"host": "127.0.0.1", "port": port, "max_concurrent_answers": concurrent},
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
    }


def show(label: str, s: dict[str, Any], base: dict[str, Any] | None = None) -> None:
    def d(key: str) -> str:
        if base is None or key not in s or key not in base:
            return ""
        return f" ({s[key] - base[key]:+,})"

    print(
        f"{label:34s} RSS {s['rss_kib'] / 1024:7.1f} MiB{d('rss_kib')} KiB | "
        f"glibc heap {s['malloc_heap_kib'] / 1024:6.1f} MiB, in use "
        f"{s['malloc_in_use_kib'] / 1024:6.1f}, free {s['malloc_free_kib'] / 1024:6.1f} | "
        f"pymalloc arenas {s.get('pymalloc_arenas_current', 0):4d}, blocks in use "
        f"{s.get('pymalloc_allocated_blocks_bytes', 0) / 2**20:5.1f} MiB | "
        f"objects {s['python_objects']:,}{d('python_objects')} | "
        f"claims {s.get('claim_index_keys', 0):,} | threads {s['threads']}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--store", default="memory", choices=["memory", "sqlite"])
    parser.add_argument("--arena-max", type=int, default=0)
    parser.add_argument("--pythonmalloc", default="", help="e.g. malloc: no pymalloc arenas")
    # Answers take ~0.2 s (chunks 0.05 s apart) and 64 run at once: a burst of 5,000
    # acks in a fraction of a second leaves thousands queued.
    parser.add_argument("--dify-delay", type=float, default=0.05)
    parser.add_argument("--max-concurrent", type=int, default=64)
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--claim-ttl", type=float, default=0.0, help="dedupe claims expire after this (not 8 h)"
    )
    args = parser.parse_args()
    pin(LOAD_CPU)
    dify, slack = BenchDify(chunks=3, delay=args.dify_delay), BenchSlack()
    await dify.start()
    await slack.start()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    (workdir / "gw.yaml").write_text(
        yaml.safe_dump(
            config(args.store, dify.base_url, slack.base_url, port, workdir, args.max_concurrent)
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    if args.pythonmalloc:
        env["PYTHONMALLOC"] = args.pythonmalloc
    proc = await asyncio.create_subprocess_exec(
        "taskset",
        "-c",
        str(SERVER_CPU),
        sys.executable,
        "-m",
        "bench.memory_probe",
        "--config",
        str(workdir / "gw.yaml"),
        *(["--claim-ttl", str(args.claim_ttl)] if args.claim_ttl else []),
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=(workdir / "gw.log").open("wb"),
    )
    probe = Probe(proc)
    readings: dict[str, Any] = {"args": vars(args)}
    try:
        await wait_port(port, "/readyz")
        slack.reset(expect=200)
        await run_load(port, slack_events(200, prefix="warm"), 32)
        await asyncio.wait_for(slack.done.wait(), 60)
        await asyncio.sleep(SETTLE_S)
        before = await probe.ask("stats")
        show("before (warmed up, 200 answered)", before)
        readings["before"] = before
        for b in range(1, args.bursts + 1):
            peak, drained, queued = await burst(probe, port, slack, args.events, f"b{b}")
            print(
                f"burst {b}: {args.events} acked, {queued} queued after the acks, "
                f"drained in {drained:.1f} s; peak RSS {peak / 1024:.1f} MiB "
                f"({peak - before['rss_kib']:+,} KiB)",
                flush=True,
            )
            await asyncio.sleep(SETTLE_S)
            after = await probe.ask("stats")
            show(f"after burst {b}, drained", after, before)
            readings[f"burst{b}"] = {"peak_kib": peak, "drained_s": drained, "after": after}
        collected = await probe.ask("gc")
        show("then a full collection", collected, before)
        trimmed = await probe.ask("trim")
        show("then malloc_trim(0)", trimmed, before)
        readings["gc"], readings["trim"] = collected, trimmed
    finally:
        if proc.returncode is None:
            with_quit = proc.stdin
            if with_quit is not None:
                with_quit.write(b"quit\n")
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
        await dify.stop()
        await slack.stop()
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, json.dumps(readings, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
