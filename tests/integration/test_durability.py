"""Nothing acked is ever lost: real gateway processes, killed with SIGKILL while they stream
an answer, on Redis (two instances) and on SQLite (one instance, restarted).

Each trial: a signed Slack DM, a slow Dify answer; once the answer is streaming, the
process that streams it is found (by its connection to the fake Dify) and killed with no
warning. The answer must then arrive exactly once, complete, in the same Slack message,
within the lease plus a few seconds, and no message may stay "streaming" or "Thinking…".
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.emulator import DifyEmulator, ScriptedReply
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.processes import GatewayProcess, client_ports_of
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

# The lease is short here so the suite stays quick; `bench/README.md` runs the same trials with
# the default lease (15 s) by setting DURABILITY_LEASE_S.
LEASE_S = float(os.environ.get("DURABILITY_LEASE_S", "1"))
CHUNKS = 16
CHUNK_DELAY_S = 0.1
TRIAL = "trial-"  # a trial's question: its first ask is held open until stopped
HOLD_FIRST_ASK_S = 30.0  # ended early by the takeover's stop (Dify's stop ends a run at once)


def answer_for(query: str) -> list[str]:
    return [f"{query}-part{i} " for i in range(CHUNKS)]


@pytest.fixture
def slow_dify(dify: DifyEmulator) -> DifyEmulator:
    return answering_slowly(dify)


def answering_slowly(dify: DifyEmulator) -> DifyEmulator:
    """Streams each answer slowly. A trial's first ask then keeps its stream open (the model
    still working) until the run is stopped, so the kill always lands mid-answer, even on a
    machine slow to notice the parts (with the stream ended, the answer could be done before
    the kill, and nothing would be taken over)."""
    asked: set[str] = set()

    def respond(request: dict[str, Any], turn: int) -> ScriptedReply:
        query = str(request["query"])
        first = query not in asked
        asked.add(query)
        hold = HOLD_FIRST_ASK_S if first and query.startswith(TRIAL) else 0.0
        return ScriptedReply(chunks=answer_for(query), delay=CHUNK_DELAY_S, hang=hold)

    dify.responder = respond
    return dify


def config(dify: DifyEmulator, slack: FakeSlack, store: str) -> dict[str, Any]:
    return {
        "server": {"shutdown_grace_s": 5},
        "store": store,
        "inbox": {"lease_s": LEASE_S, "shards": 4},
        "dify": {"apps": {"main": {"base_url": dify.base_url, "api_key": dify.api_key}}},
        "bots": {"slack-main": slack_bot(slack)},
    }


async def post(gateway: GatewayProcess, event: dict[str, Any], **headers: str) -> int:
    body = body_of(envelope(event))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.post(
            "/webhooks/slack-main", content=body, headers={**signed_headers(body), **headers}
        )
    return response.status_code


def streaming_process(
    dify: DifyEmulator, query: str, gateways: list[GatewayProcess]
) -> GatewayProcess:
    """The gateway process whose connection asked Dify `query`."""
    (request,) = [r for r in dify.requests if r["query"] == query]
    for gateway in gateways:
        if gateway.alive and request["_peer_port"] in client_ports_of(gateway.pid):
            return gateway
    raise AssertionError(f"no live gateway holds the Dify request for {query!r}")


async def one_trial(
    n: int, slack: FakeSlack, dify: DifyEmulator, gateways: list[GatewayProcess]
) -> float:
    """Kill the streaming process mid-answer; return the seconds until the answer ended."""
    query = f"{TRIAL}{n}"
    user, channel = f"U{n:03d}", f"D{n:03d}"
    event = direct(query, user=user, channel=channel)
    target = gateways[n % len(gateways)] if gateways[n % len(gateways)].alive else gateways[0]
    assert await post(target, event) == 200
    await wait_for(
        lambda: any(m.text.count("-part") >= 3 for m in slack.thread(channel, event["ts"])),
        within=10,
        what=f"trial {n}: the answer streaming",
    )
    victim = streaming_process(dify, query, gateways)
    victim.kill()
    killed_at = time.monotonic()
    await victim.wait()
    restart = asyncio.create_task(victim.start())
    expected = "".join(answer_for(query))
    await wait_for(
        lambda: (
            [m.text for m in slack.thread(channel, event["ts"])] == [expected]
            and not any(m.open for m in slack.thread(channel, event["ts"]))
        ),
        within=LEASE_S + 8,
        what=f"trial {n}: the complete answer, once",
    )
    recovered = time.monotonic() - killed_at
    await restart
    # Asked twice (the takeover asks again), the first run stopped, never a third time.
    assert [r["query"] for r in dify.requests].count(query) == 2
    return recovered


async def clean(url: str) -> str:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    return url


async def test_kill_9_mid_answer_on_redis_two_instances_twenty_times(
    slow_dify: DifyEmulator, slack: FakeSlack, redis_url: str, tmp_path: Path
) -> None:
    store = await clean(redis_url)
    gateways = [
        GatewayProcess(config(slow_dify, slack, store), tmp_path, name) for name in ("a", "b")
    ]
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        recoveries = [await one_trial(n, slack, slow_dify, gateways) for n in range(20)]
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
    # Every killed run was stopped in Dify by the instance that took it over.
    assert len(slow_dify.stops) >= 20
    assert max(recoveries) <= LEASE_S + 5
    print(
        f"recovery after SIGKILL (lease {LEASE_S}s): median {statistics.median(recoveries):.2f}s,"
        f" max {max(recoveries):.2f}s"
    )
    for gateway in gateways:
        assert "Traceback" not in gateway.logs()


async def test_kill_9_mid_answer_on_sqlite_then_restart(
    slow_dify: DifyEmulator, slack: FakeSlack, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    gateway = GatewayProcess(config(slow_dify, slack, store), tmp_path, "only")
    try:
        await gateway.start()
        recoveries = [await one_trial(n, slack, slow_dify, [gateway]) for n in range(5)]
    finally:
        await gateway.stop()
    assert max(recoveries) <= 10
    assert "Traceback" not in gateway.logs()
