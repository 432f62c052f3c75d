"""What the durable inbox promises, end to end with in-process gateways on a real Redis:
order within a conversation across instances, dead letters for a message that fails every
attempt, and the bound on unanswered messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.inbox import Progress
from gateway.inbox import durable as durable_module
from gateway.models import Job
from gateway.runtime import Gateway
from gateway.words import ENGLISH
from tests import redis_servers
from tests.conftest import GatewayFactory
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.inbox_helpers import (
    answer_for,
    answered_once,
    known_answers,
    metric,
    post,
    question,
    replies_to,
    slack_config,
)
from tests.integration.slack_helpers import direct, envelope

SHARDS = 4


REDIS_FIXTURES = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}


async def fresh_redis(request: pytest.FixtureRequest, kind: str) -> str:
    url = str(request.getfixturevalue(REDIS_FIXTURES[kind]))
    await redis_servers.flush(url)
    return url


@pytest.fixture(params=list(REDIS_FIXTURES))
async def redis_store(request: pytest.FixtureRequest) -> str:
    """One Redis server, or a Redis Cluster."""
    return await fresh_redis(request, str(request.param))


async def ready(gateway: Gateway) -> None:
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="the bot ready")


# --- 4. order across instances --------------------------------------------------------------


async def test_a_conversations_messages_reach_dify_in_order_across_instances(
    redis_store: str, gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """m1, m2, m3 of one conversation land on two instances, alternating, one right after
    the other; several conversations at once. Each conversation's messages reach Dify in
    the order sent, each after the one before has its answer, all in one Dify
    conversation. The first round runs while the two instances are still sharing out the
    shards; the second once they have."""
    known_answers(dify, delay=0.03)
    config = slack_config(dify, slack, redis_store)
    (a, gw_a), (b, gw_b) = await gateway_factory(config), await gateway_factory(config)
    for gateway in (gw_a, gw_b):
        await ready(gateway)

    async def converse(user: int, round_: int) -> list[dict[str, Any]]:
        sent = []
        for i, client in enumerate((a, b, a), 1):
            event = direct(f"u{user} r{round_} m{i}", user=f"U{user:03d}", channel=f"D{user:03d}")
            sent.append(envelope(event))
            assert await post(client, sent[-1]) == 200
        return sent

    for round_ in (1, 2):
        users = range(round_ * 10, round_ * 10 + 4)
        sent = [p for ps in await asyncio.gather(*(converse(u, round_) for u in users)) for p in ps]
        await wait_for(
            lambda s=sent: all(answered_once(slack, p) for p in s),  # type: ignore[misc]
            within=15,
            what=f"round {round_} answered",
        )
        for user in users:
            mine = [r for r in dify.requests if r["user"] == f"slack-main:U{user:03d}"]
            assert [r["query"] for r in mine] == [f"u{user} r{round_} m{i}" for i in (1, 2, 3)]
            first, *later = [r.get("conversation_id") or "" for r in mine]
            # The first starts the conversation; the later ones continue that one.
            conversation = later[0]
            assert first == "" and conversation and later == [conversation] * 2
            assert dify.conversations[conversation] == 3
        if round_ == 1:
            await wait_for(
                lambda: len(gw_a.inbox.feed._owned) == len(gw_b.inbox.feed._owned) == 2,  # type: ignore[attr-defined]
                within=10,
                what="the shards shared out",
            )


# --- 5. a poison job ----------------------------------------------------------------------


class SlackRefusingAnswers(FakeSlack):
    """Refuses every final delivery of an answer (its last part is in it), as a platform
    might refuse a message it cannot render; thinking, updates and notices go through."""

    def _respond(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        final_text = "-part7" in str(p.get("markdown_text") or p.get("text") or "")
        if method in ("chat.stopStream", "chat.update", "chat.postMessage") and final_text:
            return {"ok": False, "error": "internal_error"}
        return super()._respond(method, p)


async def test_a_message_failing_every_attempt_goes_to_the_dead_letters_with_a_notice(
    redis_store: str,
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(durable_module, "STORE_RETRY_S", (0.05, 0.1))
    slack = SlackRefusingAnswers()
    await slack.start()
    try:
        known_answers(dify)
        config = slack_config(dify, slack, redis_store, inbox={"max_attempts": 2})
        client, gateway = await gateway_factory(config)
        await ready(gateway)
        poison = question(1, "poison")
        assert await post(client, poison) == 200
        notice = ENGLISH.gave_up
        await wait_for(lambda: replies_to(slack, poison) == [notice], within=15, what="the notice")
        async with asyncio.timeout(10):
            await gateway.inbox.wait_idle()
        # Tried max_attempts times, then given up: never a third time.
        assert [r["query"] for r in dify.requests] == ["poison", "poison"]
        scrape = await (await client.get("/metrics")).text()
        assert metric(scrape, "dify_gateway_dead_letters_total", bot="slack-main") == 1

        redis = redis_servers.client(redis_store)
        try:
            dead = [
                fields
                for shard in range(SHARDS)
                for _id, fields in await redis.xrange(f"dify-gateway:{{inbox:{shard}}}:dead")
            ]
            pending = [await redis.xlen(f"dify-gateway:{{inbox:{s}}}:jobs") for s in range(SHARDS)]
        finally:
            await redis.aclose()
        (letter,) = dead
        assert json.loads(letter["job"])["message"]["text"] == "poison"
        assert letter["reason"] == "failed 2 attempts"
        assert pending == [0] * SHARDS  # out of the inbox

        # The conversation goes on: the next message is answered as usual.
        slack_ok = question(1, "fine")
        dify.reply(ScriptedReply(chunks=["all ", "good"]))
        assert await post(client, slack_ok) == 200
        await wait_for(lambda: replies_to(slack, slack_ok) == ["all good"], what="next answer")
    finally:
        await slack.stop()


async def test_a_job_answered_but_never_recorded_gets_no_notice_when_given_up(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """A flapping store can make a job run out of attempts after its answer was delivered
    (each attempt only failed to take it out of the inbox): it goes to the dead letters
    without a notice, which would otherwise land on the complete answer."""
    known_answers(dify)
    captured: list[tuple[Job, Progress]] = []
    client, gateway = await gateway_factory(slack_config(dify, slack, "memory://"))
    answer = gateway.relay.answer

    async def capture(job: Job, progress: Progress) -> None:
        captured.append((job, progress))
        await answer(job, progress)

    gateway.inbox._worker = capture
    await ready(gateway)
    payload = question(1, "answered long ago")
    assert await post(client, payload) == 200
    await wait_for(lambda: answered_once(slack, payload), what="the answer")
    ((job, progress),) = captured
    assert progress.checkpoint["answered"] is True
    calls = len(slack.calls)
    await gateway.relay.give_up(job, progress)
    assert len(slack.calls) == calls and answered_once(slack, payload)


# --- 6. the bound on unanswered messages ---------------------------------------------------


@pytest.fixture(params=[*REDIS_FIXTURES, "sqlite"])
async def bounded_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param in REDIS_FIXTURES:
        return await fresh_redis(request, str(request.param))
    return f"sqlite:///{tmp_path / 'gw.db'}"


async def test_a_flood_past_the_bound_gets_503_and_every_accepted_message_is_answered_once(
    bounded_store: str,
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`max_queued_answers: 5` and a slow Dify: of 30 messages arriving at once, 5 are
    accepted, the rest get 503 (the platform retries them later). Each accepted one is
    answered once; a refused one is not answered at all. Once the inbox has room again,
    messages are accepted again. The refusals are logged, but not one line each."""

    def respond(request: dict[str, Any], turn: int) -> ScriptedReply:
        query = str(request["query"])
        slow = query.startswith("flood")
        return ScriptedReply(chunks=answer_for(query), delay=0.25 if slow else 0.01)

    dify.responder = respond
    config = slack_config(dify, slack, bounded_store, server={"max_queued_answers": 5})
    client, gateway = await gateway_factory(config)
    await ready(gateway)
    flood = [question(100 + n, f"flood {n}") for n in range(30)]
    statuses = await asyncio.gather(*(post(client, p) for p in flood))
    accepted = [p for p, status in zip(flood, statuses, strict=True) if status == 200]
    refused = [p for p, status in zip(flood, statuses, strict=True) if status == 503]
    assert len(accepted) == 5 and len(refused) == 25
    full = [r for r in caplog.records if "the inbox is full" in r.getMessage()]
    assert 1 <= len(full) <= 10
    scrape = await (await client.get("/metrics")).text()
    assert metric(scrape, "dify_gateway_inbox_full_total") == 25
    await wait_for(
        lambda: all(answered_once(slack, p) for p in accepted), within=15, what="accepted"
    )
    async with asyncio.timeout(10):
        await gateway.inbox.wait_idle()
    asked = sorted(r["query"] for r in dify.requests)
    assert asked == sorted(p["event"]["text"] for p in accepted)
    assert all(replies_to(slack, p) == [] for p in refused)

    later = question(200, "after the flood")
    await wait_for(lambda: gateway.inbox.backlog() == 0, what="the backlog counted down")
    assert await post(client, later) == 200
    await wait_for(lambda: answered_once(slack, later), what="the answer after the flood")
