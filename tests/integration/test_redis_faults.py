"""Nothing acked is lost when Redis misbehaves: a reply lost on the way back, a frozen
server, a restart (with AOF, and without), and an outage right after an answer went out.

Each test runs its own redis-server (tests/integration/redis_faults.py), often behind a
fault proxy, and in-process gateways with a 1 s lease. The platform side is the fake Slack;
"answered once" means the thread shows exactly one reply, complete and closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from gateway.store.redis import RedisStore
from tests.conftest import GatewayFactory
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.inbox_helpers import (
    answered_once,
    known_answers,
    metric,
    post,
    question,
    replies_to,
    slack_config,
)
from tests.integration.redis_faults import FaultProxy, RedisServer, accept_call

SLACK_ACK_DEADLINE_S = 3.0


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[FaultProxy]:
    fault = FaultProxy(redis_server.port)
    await fault.start()
    yield fault
    await fault.stop()


async def ready(gateway: Gateway) -> None:
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="the bot ready")


def set_redis_py_retries(gateway: Gateway, retries: int) -> None:
    """Pin redis-py's own retry of a failed call (connection errors, timeouts)."""
    store = gateway.store
    assert isinstance(store, RedisStore)
    store._redis.set_retry(Retry(NoBackoff(), retries))


def dify_queries(dify: DifyEmulator) -> list[str]:
    return [str(r["query"]) for r in dify.requests]


# --- 1. a lost reply on the ack path ------------------------------------------------------


@pytest.mark.parametrize(
    ("redis_py_retries", "first_status", "fate"),
    [
        # The broken connection is a StoreUnavailable, so 503 and Slack retries.
        (0, 503, "duplicate"),
        # redis-py's own retry does not reach the accept: it goes out through the store's
        # batcher (gateway/store/redis_batch.py), which never sends a call twice. 503 too.
        (3, 503, "duplicate"),
    ],
)
async def test_a_lost_accept_reply_ends_in_one_answer_whether_redis_py_retries_or_not(
    proxy: FaultProxy,
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    redis_py_retries: int,
    first_status: int,
    fate: str,
) -> None:
    """Redis ran the accept (claim + keep, one script), its reply was lost and the
    connection closed. Either way the job was kept exactly once: whatever answers the
    outcome next (redis-py's retry, or Slack's) finds the claim, a duplicate."""
    known_answers(dify)
    client, gateway = await gateway_factory(slack_config(dify, slack, proxy.url))
    set_redis_py_retries(gateway, redis_py_retries)
    await ready(gateway)
    payload = question(1, "lost reply")
    proxy.lose_reply_to(accept_call())
    started = time.monotonic()
    assert await post(client, payload) == first_status
    assert time.monotonic() - started < SLACK_ACK_DEADLINE_S
    assert proxy.lost == 1
    # Slack retries a 503 (and may retry a 200 it got late): acked, as a duplicate.
    assert await post(client, payload, retry=1) == 200
    await wait_for(lambda: answered_once(slack, payload), within=10, what="the answer")
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    assert dify_queries(dify) == ["lost reply"]
    assert answered_once(slack, payload)
    scrape = await (await client.get("/metrics")).text()
    assert metric(scrape, "dify_gateway_events_total", fate="accepted") == 0
    assert metric(scrape, "dify_gateway_events_total", fate=fate) == (
        1 if first_status == 503 else 2
    )


async def test_when_every_reply_is_lost_the_webhook_gets_503_in_time_and_never_hangs(
    proxy: FaultProxy, gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """Even with redis-py retrying, an accept whose replies keep getting lost answers 503
    within the ack deadline; the job its first run kept is answered once."""
    known_answers(dify)
    client, gateway = await gateway_factory(slack_config(dify, slack, proxy.url))
    set_redis_py_retries(gateway, 10)
    await ready(gateway)
    payload = question(2, "every reply lost")
    proxy.lose_reply_to(accept_call(), times=1000)
    started = time.monotonic()
    assert await post(client, payload) == 503
    assert time.monotonic() - started < SLACK_ACK_DEADLINE_S
    assert proxy.lost >= 1
    proxy.lose_reply_to(b"", times=0)
    assert await post(client, payload, retry=1) == 200
    await wait_for(lambda: answered_once(slack, payload), within=10, what="the answer")
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    assert dify_queries(dify) == ["every reply lost"]
    scrape = await (await client.get("/metrics")).text()
    assert metric(scrape, "dify_gateway_events_total", fate="accepted") == 0


async def test_a_request_that_never_reached_redis_is_accepted_on_the_retry(
    proxy: FaultProxy, gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """The other unknown outcome: Redis never saw the accept (it was down). 503, and the
    retry is accepted as new."""
    known_answers(dify)
    client, gateway = await gateway_factory(slack_config(dify, slack, proxy.url))
    await ready(gateway)
    payload = question(3, "never arrived")
    proxy.go_down()
    started = time.monotonic()
    assert await post(client, payload) == 503
    assert time.monotonic() - started < SLACK_ACK_DEADLINE_S
    proxy.come_back()
    assert await post(client, payload, retry=1) == 200
    await wait_for(lambda: answered_once(slack, payload), within=10, what="the answer")
    assert dify_queries(dify) == ["never arrived"]
    scrape = await (await client.get("/metrics")).text()
    assert metric(scrape, "dify_gateway_events_total", fate="accepted") == 1


# --- 2. a frozen Redis ----------------------------------------------------------------------


async def test_a_frozen_redis_means_quick_503s_and_everything_acked_is_answered_after_it(
    redis_server: RedisServer,
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
) -> None:
    """SIGSTOP: connections open, nothing answers. Webhooks get 503 well inside Slack's
    3 s (the accept gives up after about 2 s), none hangs; /readyz says so. After SIGCONT
    the leases that expired meanwhile are taken again and every acked message (one was
    being answered when Redis froze) is answered once, with no help."""
    known_answers(dify, delay=0.1)
    client, gateway = await gateway_factory(slack_config(dify, slack, redis_server.url))
    await ready(gateway)
    streaming = question(10, "streaming when redis froze")
    assert await post(client, streaming) == 200
    await wait_for(
        lambda: any("-part1" in t for t in replies_to(slack, streaming)), what="the answer going"
    )
    redis_server.freeze()
    frozen_at = time.monotonic()
    try:
        during = [question(11 + i, f"sent while frozen {i}") for i in range(3)]
        timed = await asyncio.gather(*(timed_post(client, p) for p in during))
        assert [status for status, _ in timed] == [503, 503, 503]
        assert max(seconds for _, seconds in timed) < SLACK_ACK_DEADLINE_S
        assert (await client.get("/readyz")).status == 503
        # Frozen for longer than the lease: every lease has expired when Redis wakes up.
        await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - frozen_at)))
    finally:
        redis_server.thaw()
    for payload in during:  # Slack's retries
        assert await post(client, payload, retry=1) == 200
    everything = [streaming, *during]
    await wait_for(
        lambda: all(answered_once(slack, p) for p in everything),
        within=15,
        what="every acked message answered",
    )
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    assert all(answered_once(slack, p) for p in everything)
    # Nobody else could take the lapsed leases: this instance kept them, and its answers
    # went on. Nothing was stopped and asked again.
    assert sorted(dify_queries(dify)) == sorted(p["event"]["text"] for p in everything)
    assert dify.stops == []


async def timed_post(client: Any, payload: dict[str, Any]) -> tuple[int, float]:
    started = time.monotonic()
    status = await post(client, payload)
    return status, time.monotonic() - started


# --- 3. a Redis restart ---------------------------------------------------------------------


async def retry_until_acked(client: Any, payload: dict[str, Any], within: float = 15) -> None:
    """What a platform does with a 503: deliver the event again, later."""
    deadline = time.monotonic() + within
    attempt = 1
    while await post(client, payload, retry=attempt) != 200:
        assert time.monotonic() < deadline, f"{payload['event']['text']} never acked"
        attempt += 1
        await asyncio.sleep(0.3)


@pytest.mark.parametrize(
    ("lease_s", "outage_s"),
    [
        (3.0, 0.3),  # back within the lease: every lease is renewed, nothing stops
        (1.0, 2.5),  # longer than the lease: answers stop, and resume once Redis is back
    ],
)
async def test_a_redis_restart_with_aof_loses_nothing_acked_and_doubles_nothing(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    lease_s: float,
    outage_s: float,
) -> None:
    """Redis killed with SIGKILL mid-run and started again on its AOF (`appendfsync
    always`): every acked message is answered after the restart, those sent while it was
    down get 503 and are answered once the platform retries, and no reply shows twice."""
    server = RedisServer(tmp_path, aof=True)
    await server.start()
    try:
        known_answers(dify, delay=0.15)
        config = slack_config(
            dify,
            slack,
            server.url,
            server={"max_concurrent_answers": 2},  # some acked answers have not started
            inbox={"lease_s": lease_s},
        )
        client, gateway = await gateway_factory(config)
        await ready(gateway)
        acked = [question(20 + i, f"acked before the restart {i}") for i in range(5)]
        for payload in acked:
            assert await post(client, payload) == 200
        await wait_for(
            lambda: any("-part1" in t for p in acked for t in replies_to(slack, p)),
            what="answers streaming",
        )
        await server.kill()
        down = [question(30 + i, f"sent while redis was down {i}") for i in range(2)]
        for payload in down:
            started = time.monotonic()
            assert await post(client, payload) == 503
            assert time.monotonic() - started < SLACK_ACK_DEADLINE_S
        await asyncio.sleep(outage_s)
        await server.start()
        for payload in down:
            await retry_until_acked(client, payload)
        everything = [*acked, *down]
        await wait_for(
            lambda: all(answered_once(slack, p) for p in everything),
            within=20,
            what="every acked message answered once",
        )
        async with asyncio.timeout(10):
            await gateway.inbox.wait_idle()
        assert all(answered_once(slack, p) for p in everything)
        asked = dify_queries(dify)
        for payload in everything:
            # Twice at most: an answer stopped by a lapsed lease is asked again.
            assert 1 <= asked.count(payload["event"]["text"]) <= (1 if outage_s < lease_s else 2)
        await client.close()
    finally:
        await server.stop()


async def test_after_a_restart_that_lost_everything_new_messages_are_answered(
    redis_server: RedisServer, gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """Without persistence a restart loses the inbox (the README says so); the gateway must
    still go on: it makes its consumer groups again and answers what comes next."""
    known_answers(dify)
    client, gateway = await gateway_factory(slack_config(dify, slack, redis_server.url))
    await ready(gateway)
    before = question(40, "before the restart")
    assert await post(client, before) == 200
    await wait_for(lambda: answered_once(slack, before), what="the first answer")
    await redis_server.kill()
    await redis_server.start()  # empty: no AOF
    after = question(41, "after the restart")
    await retry_until_acked(client, after)
    await wait_for(lambda: answered_once(slack, after), within=15, what="the answer after")
    assert dify_queries(dify) == ["before the restart", "after the restart"]
    await client.close()


# --- 8. the store fails right after the answer went out -------------------------------------


class SlackThatCutsRedis(FakeSlack):
    """A fake Slack that takes Redis away the moment a reply's final text reaches it."""

    proxy: FaultProxy | None = None
    outage_s = 0.0

    def _respond(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        body = super()._respond(method, p)
        message = self.messages.get(str(p.get("ts")))
        final = method == "chat.stopStream" or (method == "chat.update" and "-part7" in str(p))
        if final and message is not None and self.proxy is not None:
            self.proxy.go_down()
            asyncio.get_running_loop().call_later(self.outage_s, self.proxy.come_back)
        return body


@pytest.mark.parametrize("outage_s", [0.3, 2.0])  # within the 1 s lease, and beyond it
async def test_a_store_failure_right_after_the_final_text_never_shows_an_error(
    proxy: FaultProxy, gateway_factory: GatewayFactory, dify: DifyEmulator, outage_s: float
) -> None:
    """Everything after the final text (the `answered` checkpoint, the feedback record,
    taking the job out of the inbox) fails for a while. The chat keeps the complete
    answer with nothing appended, and Dify is not asked again, even when the outage
    outlasts the lease and the job is started again."""
    slack = SlackThatCutsRedis()
    await slack.start()
    try:
        known_answers(dify)
        client, gateway = await gateway_factory(slack_config(dify, slack, proxy.url))
        await ready(gateway)
        slack.proxy, slack.outage_s = proxy, outage_s
        for n in range(3):
            payload = question(50 + n, f"cut after the answer {n}")
            assert await post(client, payload) == 200
            await wait_for(lambda p=payload: answered_once(slack, p), what=f"answer {n}")
            async with asyncio.timeout(15):
                await gateway.inbox.wait_idle()
            assert answered_once(slack, payload)
            assert not any("Sorry" in text for text in replies_to(slack, payload))
        assert dify_queries(dify) == [f"cut after the answer {n}" for n in range(3)]
        assert dify.stops == []
        await client.close()
    finally:
        await slack.stop()
