"""Two real gateway processes on a Redis Cluster: a message accepted on one instance is
answered once, and when the instance streaming an answer dies (SIGKILL), the other takes its
inbox shard over and finishes the answer in the same Slack message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.emulator import DifyEmulator
from tests import redis_servers
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.processes import GatewayProcess
from tests.integration.slack_helpers import direct
from tests.integration.test_durability import (
    LEASE_S,
    answer_for,
    answering_slowly,
    config,
    one_trial,
    post,
)


@pytest.fixture
def slow_dify(dify: DifyEmulator) -> DifyEmulator:
    return answering_slowly(dify)


async def test_two_instances_on_a_cluster_answer_once_and_take_over_a_killed_one(
    slow_dify: DifyEmulator, slack: FakeSlack, redis_cluster_url: str, tmp_path: Path
) -> None:
    await redis_servers.flush(redis_cluster_url)
    gateways = [
        GatewayProcess(config(slow_dify, slack, redis_cluster_url), tmp_path, name)
        for name in ("a", "b")
    ]
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        # Accepted on A, retried by Slack on B: answered once, completely.
        event = direct("hello", user="U900", channel="D900")
        assert await post(gateways[0], event) == 200
        assert await post(gateways[1], event, **{"X-Slack-Retry-Num": "1"}) == 200
        expected = "".join(answer_for("hello"))
        await wait_for(
            lambda: (
                [m.text for m in slack.thread("D900", event["ts"])] == [expected]
                and not any(m.open for m in slack.thread("D900", event["ts"]))
            ),
            within=15,
            what="the answer, once",
        )
        assert [r["query"] for r in slow_dify.requests] == ["hello"]
        # Killed mid-answer: the survivor resumes it within the lease and a few seconds.
        recoveries = [await one_trial(n, slack, slow_dify, gateways) for n in range(3)]
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
    assert max(recoveries) <= LEASE_S + 5
    for gateway in gateways:
        assert "Traceback" not in gateway.logs()
