"""The shipped deployment, tested for real: Redis (AOF, fsync always), two gateway processes
and nginx running deploy/nginx/nginx.conf, as docker-compose.yml wires them.

A rolling deploy under traffic: signed Slack webhooks go through nginx from several senders
in several conversations while one gateway gets SIGTERM and is restarted, then the other.
Every question must be answered exactly once, complete, the platform must never see a 5xx,
and conversations must carry on whichever instance answers them.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from gateway.emulator import DifyEmulator, ScriptedReply
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.processes import GatewayProcess, client_ports_of
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot
from tests.integration.topology import Nginx, RedisServer

CONVERSATIONS = 12
SENDERS = 6
MESSAGES = 300
DURATION_S = 15.0
CHUNKS = 5


def answer_for(query: str) -> list[str]:
    return [f"{query}:{i} " for i in range(CHUNKS)]


@dataclass
class Deployment:
    redis: RedisServer
    gateways: list[GatewayProcess]
    nginx: Nginx
    # Which process generation asked Dify each query: "a0", then "a1" after a restart, …
    answered_by: dict[str, str] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=lambda: collections.Counter())

    def process_of(self, peer_port: int | None) -> str:
        for gateway in self.gateways:
            if gateway.alive and peer_port in client_ports_of(gateway.pid):
                return f"{gateway.name}{self.generation[gateway.name]}"
        return "?"

    async def restart(self, gateway: GatewayProcess) -> float:
        """SIGTERM, wait for a clean exit, start again and wait until ready (as a rolling
        deploy does, one instance at a time). Returns the seconds it was out."""
        began = time.monotonic()
        gateway.terminate()
        assert await gateway.wait(30) == 0, gateway.logs()[-3000:]
        self.generation[gateway.name] += 1
        await gateway.start()
        return time.monotonic() - began


@pytest.fixture
async def deployment(
    dify: DifyEmulator, slack: FakeSlack, tmp_path: Path
) -> AsyncIterator[Deployment]:
    redis = RedisServer(tmp_path)
    await redis.start()
    config = {
        "server": {"shutdown_grace_s": 10},
        "store": redis.url,
        # A draining instance hands its shards over at once, so the lease only bounds a
        # takeover after a crash; 6 s keeps a loop stalled by a loaded CI machine from
        # losing its lease mid-answer (which would ask Dify twice, as a crash does).
        "inbox": {"lease_s": 6, "shards": 4},
        "dify": {"apps": {"main": {"base_url": dify.base_url, "api_key": dify.api_key}}},
        "bots": {"slack-main": slack_bot(slack)},
    }
    gateways = [GatewayProcess(config, tmp_path, name) for name in ("a", "b")]
    nginx = Nginx([g.port for g in gateways])
    deployment = Deployment(redis, gateways, nginx)

    def respond(request: dict[str, Any], turn: int) -> ScriptedReply:
        query = str(request["query"])
        deployment.answered_by[query] = request["_process"] = deployment.process_of(
            request["_peer_port"]
        )
        request["_at"] = time.time()
        return ScriptedReply(chunks=answer_for(query), delay=0.05)

    dify.responder = respond
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        await nginx.start()
        yield deployment
    finally:
        await asyncio.gather(*(g.stop() for g in gateways))
        await nginx.stop()
        nginx.remove()
        await redis.stop()


@dataclass
class Sent:
    query: str
    channel: str
    ts: str
    status: int


async def send_traffic(nginx: Nginx, began: float) -> list[Sent]:
    """MESSAGES signed webhooks over DURATION_S, from SENDERS concurrent senders, each taking
    turns between its conversations (one Slack DM each)."""
    sent: list[Sent] = []
    interval = DURATION_S / MESSAGES
    per_sender = MESSAGES // SENDERS

    async def sender(http: httpx.AsyncClient, s: int) -> None:
        mine = [c for c in range(CONVERSATIONS) if c % SENDERS == s]
        for k in range(per_sender):
            n = k * SENDERS + s
            await asyncio.sleep(max(0.0, began + n * interval - time.monotonic()))
            conversation = mine[k % len(mine)]
            query = f"c{conversation}-m{n}"
            event = direct(query, user=f"U{conversation:03d}", channel=f"D{conversation:03d}")
            body = body_of(envelope(event))
            # Through nginx, as the platform would reach the deployment.
            response = await http.post(
                "/webhooks/slack-main", content=body, headers=signed_headers(body)
            )
            sent.append(Sent(query, event["channel"], event["ts"], response.status_code))

    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        await asyncio.gather(*(sender(http, s) for s in range(SENDERS)))
    return sent


async def test_rolling_deploy_behind_nginx_answers_every_message_once(
    deployment: Deployment, dify: DifyEmulator, slack: FakeSlack
) -> None:
    a, b = deployment.gateways
    began = time.monotonic()
    traffic = asyncio.create_task(send_traffic(deployment.nginx, began))

    await asyncio.sleep(3)
    # B goes as soon as A is ready again, while nginx still counts A as failed (for the
    # upstream's fail_timeout): the backup lines are what reach A then.
    outages = [await deployment.restart(gateway) for gateway in (a, b)]
    sent = await traffic

    assert len(sent) == MESSAGES
    # No 5xx reached the platform: nginx sent what a draining (503) or stopped (connection
    # refused) instance could not take to the other one.
    assert [s for s in sent if s.status != 200] == []

    def all_answered() -> bool:
        return all(
            [m.text for m in slack.thread(s.channel, s.ts)] == ["".join(answer_for(s.query))]
            for s in sent
        )

    try:
        await wait_for(all_answered, within=30, what="every question answered once, complete")
    except AssertionError:
        unanswered = [
            s
            for s in sent
            if [m.text for m in slack.thread(s.channel, s.ts)] != ["".join(answer_for(s.query))]
        ]
        traces = {f"slack-main:{s.channel}:{s.ts}" for s in unanswered}
        print([(s.query, [m.text for m in slack.thread(s.channel, s.ts)]) for s in unanswered])
        print(log_lines(deployment, traces))
        raise
    assert not any(m.open for m in slack.messages.values())
    assert len(slack.messages) == MESSAGES
    asked = collections.Counter(r["query"] for r in dify.requests)
    if asked != collections.Counter(s.query for s in sent):
        print(asked_twice(deployment, dify))
    assert asked == collections.Counter(s.query for s in sent)

    # One Dify conversation per chat, carried on by whichever process answered.
    by_user: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for request in dify.requests:
        by_user[request["user"]].append(request)
    assert len(by_user) == CONVERSATIONS
    for requests in by_user.values():
        assert not requests[0].get("conversation_id")
        (conversation,) = {r["conversation_id"] for r in requests[1:]}
        assert dify.conversations[conversation] == len(requests)
    assert "?" not in deployment.answered_by.values()
    processes = collections.defaultdict(set)
    for request in dify.requests:
        processes[request["user"]].add(deployment.answered_by[request["query"]])
    assert all(len(p) >= 2 for p in processes.values()), processes

    log = deployment.nginx.access_log()
    retried = [line for line in log if re.search(r"upstream_status=\S+, ", line)]
    assert retried, "no webhook met a draining or stopped instance: the deploy was not tested"
    print(
        f"rolling deploy: {MESSAGES} webhooks, outages {[f'{o:.1f}s' for o in outages]}, "
        f"{len(retried)} retried by nginx on the other instance"
    )
    for gateway in deployment.gateways:
        assert "Traceback" not in gateway.logs()


def asked_twice(deployment: Deployment, dify: DifyEmulator) -> str:
    """Who asked Dify more than once for a query, when, and what both processes logged
    about those messages: the evidence a doubled answer needs."""
    by_query: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for request in dify.requests:
        by_query[str(request["query"])].append(request)
    lines: list[str] = []
    traces: set[str] = set()
    for query, requests in sorted(by_query.items()):
        if len(requests) < 2:
            continue
        lines.append(f"{query} asked {len(requests)} times:")
        for r in requests:
            at = time.strftime("%H:%M:%S", time.localtime(r["_at"])) + f"{r['_at'] % 1:.3f}"[1:]
            lines.append(f"  {r.get('_process')} at {at} port {r['_peer_port']} {r['_headers']}")
            traces.add(str(r["_headers"].get("X-Trace-Id", "")))
    return "\n".join([*lines, log_lines(deployment, traces)])


def log_lines(deployment: Deployment, traces: set[str]) -> str:
    """Both gateway logs' lines about the inbox and about the messages `traces` name."""
    lines: list[str] = []
    for gateway in deployment.gateways:
        lines.append(f"--- {gateway.name}.log (those messages, and the inbox)")
        for line in gateway.logs().splitlines():
            if any(t and t in line for t in traces) or "gateway.message" not in line:
                lines.append(line)
    return "\n".join(lines)


# --- the proxy settings themselves, against stand-in upstreams -----------------------------


@dataclass
class StandIn:
    """An upstream that records what nginx sent it and answers every request with `status`
    (503: an instance that is draining) after `delay` seconds (a hung instance)."""

    status: int = 200
    delay: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/chat/{bot}/ws", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"path": request.path, "headers": dict(request.headers), "body": body})
        await asyncio.sleep(self.delay)
        return web.json_response(
            {"bytes": len(body), "xff": request.headers.get("X-Forwarded-For")},
            status=self.status,
        )

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"path": request.path, "headers": dict(request.headers), "body": b""})
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo: {message.data}")
        return ws


@dataclass
class StandIns:
    draining: StandIn
    hung: StandIn
    serving: StandIn
    nginx: Nginx


@pytest.fixture
async def stand_ins() -> AsyncIterator[StandIns]:
    # Longer than nginx's proxy_read_timeout (3 s), shorter than the client's timeout.
    draining, hung, serving = StandIn(status=503), StandIn(delay=6), StandIn()
    for stand_in in (draining, hung, serving):
        await stand_in.start()
    nginx = Nginx([draining.port, hung.port, serving.port])
    try:
        await nginx.start()
        yield StandIns(draining, hung, serving, nginx)
    finally:
        await nginx.stop()
        nginx.remove()
        for stand_in in (draining, hung, serving):
            await stand_in.stop()


async def test_nginx_goes_around_draining_and_hung_instances_and_passes_clients_through(
    stand_ins: StandIns,
) -> None:
    draining, hung, serving, nginx = (
        stand_ins.draining,
        stand_ins.hung,
        stand_ins.serving,
        stand_ins.nginx,
    )
    async with httpx.AsyncClient(base_url=nginx.url, timeout=10) as http:
        # A webhook (a POST) that meets the draining or the hung instance goes to the one
        # that serves.
        took = []
        for _ in range(6):
            began = time.monotonic()
            response = await http.post(
                "/webhooks/slack-main",
                content=b"{}",
                headers={"X-Forwarded-For": "203.0.113.7"},
            )
            took.append(time.monotonic() - began)
            assert response.status_code == 200
            # The client's X-Forwarded-For is kept; nginx adds the address it saw.
            assert response.json()["xff"] == "203.0.113.7, 127.0.0.1"
        assert len(serving.seen) == 6
        assert len(draining.seen) >= 1 and len(hung.seen) >= 1
        # The hung instance cost one wait of proxy_read_timeout, not one every third request:
        # after a failure nginx leaves an instance alone for fail_timeout.
        assert len([t for t in took if t >= 2.5]) == 1, took

        # A body at the gateway's own limit (1 MiB) and a bit over it reach the gateway,
        # which answers 413 itself; a far larger one nginx refuses.
        for size in (1_048_576, 1_048_577):
            response = await http.post("/webhooks/slack-main", content=b"x" * size)
            assert (response.status_code, response.json()["bytes"]) == (200, size)
        huge = await http.post("/webhooks/slack-main", content=b"x" * (3 * 1_048_576))
        assert huge.status_code == 413

        # Metrics are per instance: not served through the load balancer.
        seen = len(serving.seen) + len(draining.seen) + len(hung.seen)
        assert (await http.get("/metrics")).status_code == 404
        assert len(serving.seen) + len(draining.seen) + len(hung.seen) == seen

    # The web chat's WebSocket goes through, upgrade and all.
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{nginx.url}/chat/web-chat/ws?token=secret-jwt") as ws,
    ):
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "echo: hello"
    assert serving.seen[-1]["path"] == "/chat/web-chat/ws"
    assert serving.seen[-1]["headers"]["Upgrade"].lower() == "websocket"

    log = "\n".join(nginx.access_log())
    # nginx's own account: the draining instance's 503 and the hung one's timeout (504),
    # each followed by the answer of the one that serves.
    assert re.search(r"upstream_status=(\S+, )*503, (\S+, )*200 ", log), log
    assert re.search(r"upstream_status=(\S+, )*504, (\S+, )*200 ", log), log
    assert "/chat/web-chat/ws" in log
    # Tokens in query strings (the web chat's, the status page's) stay out of the log.
    assert "secret-jwt" not in log
