"""`dify-gateway serve` as a real process: SIGTERM lets the answer in flight finish, turns
new webhooks away with 503, and exits 0; the logs hold no secret. And `demo` runs."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.demo import run_demo
from gateway.emulator import DifyEmulator, ScriptedReply
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.integration.processes import all_up
from tests.integration.slack_helpers import (
    SIGNING_SECRET,
    body_of,
    direct,
    envelope,
    signed_headers,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_drains_answers_and_exits_0(dify: DifyEmulator, tmp_path: Path) -> None:
    slack = FakeSlack()
    await slack.start()
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 10},
        "store": f"sqlite:///{tmp_path / 'gw.db'}",
        "dify": {"apps": {"main": {"base_url": dify.base_url, "api_key": dify.api_key}}},
        "bots": {
            "s": {
                "platform": "slack",
                "app": "main",
                "api_base": slack.base_url,
                "signing_secret": SIGNING_SECRET,
                "bot_token": BOT_TOKEN,
            }
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    ready = await http.get("/readyz")
                    if ready.status_code == 200 and all_up(ready.json()):
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway never became ready")
            words = [f"w{i} " for i in range(20)]
            dify.reply(ScriptedReply(chunks=words, delay=0.1))
            event = direct("a slow question")
            body = body_of(envelope(event))
            assert (
                await http.post("/webhooks/s", content=body, headers=signed_headers(body))
            ).status_code == 200
            await asyncio.sleep(0.4)  # the answer is streaming now
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            late = body_of(envelope(direct("too late")))
            response = await http.post("/webhooks/s", content=late, headers=signed_headers(late))
            assert response.status_code == 503
            assert (await http.get("/readyz")).status_code == 503
        returncode = await asyncio.wait_for(proc.wait(), 15)
        assert returncode == 0
        (msg,) = slack.thread("D111", event["ts"])
        assert msg.text == "".join(words)
        assert [r["query"] for r in dify.requests] == ["a slow question"]
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
        assert "shutting down" in logs
        for secret in (SIGNING_SECRET, BOT_TOKEN, dify.api_key):
            assert secret not in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await slack.stop()


async def test_the_demo_runs_the_whole_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFY_API_KEY", raising=False)
    out = io.StringIO()
    assert await run_demo(out=out) == 0
    text = out.getvalue()
    assert "\u2190 200" in text and "\u2190 401" in text
    assert "turn 1 of this conversation" in text and "turn 2 of this conversation" in text
    assert "Started a new conversation" in text
