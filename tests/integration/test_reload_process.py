"""SIGHUP on a real `dify-gateway serve`: a bad file is refused and logged by key, a good one
adds a bot without a restart, an answer streaming meanwhile finishes whole, and the JSON log
joins each message's steps by the trace id Dify got."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from gateway.emulator import DifyEmulator, ScriptedReply
from tests.conftest import make_config
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.helpers import wait_for
from tests.integration.processes import GatewayProcess
from tests.integration.slack_helpers import (
    SIGNING_SECRET,
    body_of,
    direct,
    envelope,
    signed_headers,
    slack_bot,
)


async def post(http: httpx.AsyncClient, bot: str, event: dict[str, Any]) -> int:
    body = body_of(envelope(event))
    response = await http.post(f"/webhooks/{bot}", content=body, headers=signed_headers(body))
    return response.status_code


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_sighup_reloads_a_running_process(
    dify: DifyEmulator, slack: FakeSlack, tmp_path: Path
) -> None:
    config = make_config(dify, {"s": slack_bot(slack)}) | {"logging": {"format": "json"}}
    gateway = GatewayProcess(config, tmp_path, "reloaded")
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            words = [f"w{i} " for i in range(15)]
            dify.reply(ScriptedReply(chunks=words, delay=0.1))
            slow = direct("a slow question")
            assert await post(http, "s", slow) == 200
            await wait_for(lambda: len(dify.requests) == 1, what="the answer under way")

            bad = make_config(dify, {"s": slack_bot(slack, app="nope")})
            gateway.reload(bad)
            await wait_for(lambda: "bots.s.app" in gateway.logs(), what="the refusal logged")
            assert gateway.alive

            good = config | {"bots": {"s": slack_bot(slack), "t": slack_bot(slack)}}
            gateway.reload(good)

            async def both_up() -> bool:
                ready = (await http.get("/readyz")).json()
                return bool(ready["bots"] == {"s": "up", "t": "up"})

            for _ in range(200):
                if await both_up():
                    break
                await asyncio.sleep(0.05)
            assert await both_up(), gateway.logs()[-2000:]
            dify.reply(ScriptedReply(chunks=["from t"]))
            fresh = direct("to the new bot", channel="D222")
            assert await post(http, "t", fresh) == 200
            for channel, event, text in (("D222", fresh, "from t"), ("D111", slow, "".join(words))):
                await wait_for(
                    lambda c=channel, e=event, t=text: slack.final_texts(c, e["ts"]) == [t],
                    within=10,
                    what=f"the answer in {channel}",
                )
            metrics = (await http.get("/metrics")).text
        assert gateway.alive
        assert slack.final_texts("D111", slow["ts"]) == ["".join(words)]
        assert slack.final_texts("D222", fresh["ts"]) == ["from t"]
        assert 'dify_gateway_reloads_total{outcome="error"} 1.0' in metrics
        assert 'dify_gateway_reloads_total{outcome="ok"} 1.0' in metrics
    finally:
        await gateway.stop()
    logs = gateway.logs()
    for secret in (SIGNING_SECRET, BOT_TOKEN, dify.api_key):
        assert secret not in logs
    lines = json_lines(logs)  # every line is one JSON object
    refusal = [line for line in lines if "bots.s.app" in line["message"]]
    assert refusal and refusal[0]["level"] == "ERROR"
    # Each message's life, joined by the trace id Dify got as X-Trace-Id.
    for request in dify.requests:
        trace = request["_headers"]["X-Trace-Id"]
        steps = [line for line in lines if line["trace_id"] == trace]
        assert [s["event"] for s in steps if s["event"] != "first_update"] == [
            "accepted",
            "first_token",
            "delivered",
        ]
        assert "first_update" in [s["event"] for s in steps]
        assert {s["bot"] for s in steps} <= {"s", "t"} and len({s["chat"] for s in steps}) == 1
        done = steps[-1] if steps[-1]["event"] == "delivered" else None
        assert done is not None and done["total_s"] > 0
