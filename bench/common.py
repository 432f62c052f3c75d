"""Shared bench machinery: CPU pinning, a lean HTTP/1.1 load client, signed Slack events,
RSS readings, percentiles.

The load client speaks raw HTTP/1.1 over asyncio streams with keep-alive: a full HTTP
client library would cost more CPU per request than the bare server it measures, and the
benchmark would measure the load generator instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.slack.verify import sign

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
SERVER_CPU = 1  # the server under test gets one core ...
LOAD_CPU = 0  # ... and the load generator and fakes the other


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def slack_events(
    n: int, *, prefix: str, text: str = "bench question", conversations: int = 0
) -> list[bytes]:
    """`n` signed HTTP requests, each a distinct DM event (so each one is answered); spread
    over `conversations` DM channels (0: one channel each)."""
    requests = []
    ts_now = str(int(time.time()))
    for i in range(n):
        body = json.dumps(
            {
                "token": "t",
                "team_id": "T1",
                "type": "event_callback",
                "event_id": f"Ev{prefix}{i:06d}",
                "event_time": int(time.time()),
                "event": {
                    "type": "message",
                    "channel_type": "im",
                    "channel": f"D{prefix}{i % conversations if conversations else i}",
                    "user": f"U{i % conversations if conversations else i}",
                    "text": f"{text} {i}",
                    "ts": f"1700000000.{i:06d}",
                    "team": "T1",
                },
            }
        ).encode()
        head = (
            f"POST /webhooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Slack-Request-Timestamp: {ts_now}\r\n"
            f"X-Slack-Signature: {sign(SECRET, ts_now, body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    started_at: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "per_second": round(self.per_second, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "max_ms": round(max(self.latencies_ms), 2),
        }


async def _connection(port: int, queue: asyncio.Queue[bytes], result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            sent = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            status = int(status_line.split()[1])
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_load(port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    result = LoadResult(len(requests), 0.0, [], {}, time.monotonic())
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, queue, result) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def start_server(*args: str) -> subprocess.Popen[bytes]:
    """Run `python -m bench.servers ...` pinned to the server core. Its log goes to a file in
    bench/results/ (a pipe nobody read filled up and stopped a server that logged much)."""
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    with (results / f"server-{args[0]}-{os.getpid()}-{time.time_ns()}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.servers", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def wait_port(port: int, path: str = "/healthz", within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
            # /readyz is 200 before the bots are up: wait for those too (none "starting").
            if b" 200 " in answer.split(b"\r\n", 1)[0] and b'"starting"' not in answer:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"server on {port} never answered {path}")


class RedisServer:
    """A redis-server of the bench's own on a free loopback port, pinned to the load core:
    with `aof`, every write is fsynced before Redis answers (`appendfsync always`), the
    persistence the README recommends for the durable inbox."""

    def __init__(self, *, aof: bool) -> None:
        self.aof = aof
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.aof
            else ["--appendonly", "no"]
        )
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                self._dir,
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self._proc.pid, {LOAD_CPU})
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "flushall"], check=True, stdout=subprocess.DEVNULL
        )

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
