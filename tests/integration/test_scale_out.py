"""Two gateway instances behind a load balancer, sharing one real Redis (a server, or a Redis
Cluster): a platform retry that lands on the other instance is not answered again, and a
conversation started on one instance continues on the other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.emulator import DifyEmulator
from tests import redis_servers
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot


@pytest.fixture(params=["redis_url", "redis_cluster_url"], ids=["redis", "redis-cluster"])
async def clean_redis(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(request.param))
    await redis_servers.flush(url)
    return url


async def test_two_instances_share_dedupe_and_conversations(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, clean_redis: str
) -> None:
    config = make_config(dify, {"slack-main": slack_bot(slack)}, store=clean_redis)
    (a, gw_a), (b, gw_b) = await gateway_factory(config), await gateway_factory(config)
    for gateway in (gw_a, gw_b):
        await wait_for(lambda g=gateway: g.adapters["slack-main"].ready, what="bot ready")

    async def post(client: Any, payload: dict[str, Any], **headers: str) -> int:
        body = body_of(payload)
        response = await client.post(
            "/webhooks/slack-main", data=body, headers={**signed_headers(body), **headers}
        )
        return int(response.status)

    async def settle() -> None:
        async with asyncio.timeout(10):
            await gw_a.inbox.wait_idle()
            await gw_b.inbox.wait_idle()

    first = envelope(direct("first question"))
    assert await post(a, first) == 200
    # Slack retries the same event; the load balancer sends it to the other instance.
    assert await post(b, first, **{"X-Slack-Retry-Num": "1"}) == 200
    await settle()
    assert [r["query"] for r in dify.requests] == ["first question"]

    # The next message lands on B and continues the conversation A started.
    assert await post(b, envelope(direct("follow-up"))) == 200
    await settle()
    assert len(dify.requests) == 2
    assert dify.requests[1]["conversation_id"] in dify.conversations
    assert dify.requests[1]["user"] == dify.requests[0]["user"] == "slack-main:U222"
    assert all(not m.open for m in slack.messages.values())
