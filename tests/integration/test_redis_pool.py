"""More answers at once than the Redis pool has connections: callers wait for a connection,
and every message is answered, on one Redis server and on a Redis Cluster. (redis-py's
default async pool refused the 101st connection, and a burst of answers failed with
`MaxConnectionsError`; its cluster client does the same per node.)"""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.emulator import DifyEmulator, ScriptedReply
from tests import redis_servers
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot

POOL = 4
ANSWERS = 60


@pytest.mark.parametrize("redis_fixture", ["redis_url", "redis_cluster_url"])
async def test_a_burst_wider_than_the_pool_is_answered_in_full(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    redis_fixture: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_url = str(request.getfixturevalue(redis_fixture))
    await redis_servers.flush(redis_url)
    # Every answer streams for a while, so all of them hold the lock and talk to Redis at once.
    dify.responder = lambda request, turn: ScriptedReply(
        chunks=["one ", "two ", "three"], delay=0.05
    )
    config = make_config(
        dify,
        {"slack-main": slack_bot(slack)},
        store=redis_url,
        server={"store_max_connections": POOL},
    )
    client, gateway = await gateway_factory(config)
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="bot ready")

    async def post(i: int) -> int:
        body = body_of(envelope(direct(f"question {i}", user=f"U{i:04d}", channel=f"D{i:04d}")))
        response = await client.post(
            "/webhooks/slack-main", data=body, headers=signed_headers(body)
        )
        return int(response.status)

    with caplog.at_level(logging.WARNING):
        statuses = await asyncio.gather(*(post(i) for i in range(ANSWERS)))
        assert statuses == [200] * ANSWERS
        async with asyncio.timeout(30):
            await gateway.inbox.wait_idle()
        assert gateway.inbox.in_flight == 0

    finals = sorted(m.text for m in slack.messages.values() if not m.open)
    assert len(finals) == ANSWERS
    assert all(text == "one two three" for text in finals)
    assert len(dify.requests) == ANSWERS
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == []
