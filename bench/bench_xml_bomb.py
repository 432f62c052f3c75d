"""How fast the WeCom app adapter refuses hostile XML, next to a normal callback.

Run from the repository root:

    .venv/bin/python bench/bench_xml_bomb.py [--rounds 2000]

Two measurements per payload:
- `handle()`: the adapter alone (parse, verify, decrypt, convert), N rounds;
- `HTTP`: a POST through the real gateway edge (aiohttp on loopback), N/10 rounds.
Plus, for scale, what an undefended parser (stdlib ElementTree) does with the same bomb.

The goal is that every hostile body is refused (400) well under 100 ms, without expanding
anything: defusedxml stops at the `<!DOCTYPE`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import xml.etree.ElementTree as StdET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiohttp.test_utils import TestClient  # noqa: E402

from adapters.wecom.adapter import WecomAppAdapter  # noqa: E402
from adapters.wecom.crypto import WecomCrypto  # noqa: E402
from gateway.config import WecomBot, parse_config  # noqa: E402
from gateway.models import InboundMessage, WebhookRequest  # noqa: E402
from gateway.pacing import BotBudget  # noqa: E402
from gateway.platform import AdapterContext, Delivery, Read, WebhookRejected  # noqa: E402
from gateway.runtime import Gateway  # noqa: E402
from gateway.store.memory import MemoryStore  # noqa: E402
from gateway.testing import GatewayTestServer  # noqa: E402

DATA = ROOT / "tests" / "data" / "wecom"
CORP_ID = "ww1234567890abcdef"
TOKEN = "callbacktoken"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
BOT = {
    "platform": "wecom",
    "app": "main",
    "api_base": "http://127.0.0.1:9",  # never reached: nothing here is answered
    "corp_id": CORP_ID,
    "agent_id": 1000002,
    "secret": "secret",
    "token": TOKEN,
    "encoding_aes_key": AES_KEY,
}


def _quadratic_blowup() -> bytes:
    """One 50 KB entity referenced 20,000 times: ~1 GB if expanded, no nesting needed."""
    entity = "x" * 50_000
    refs = "&a;" * 20_000
    return (
        f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "{entity}">]>'
        f"<xml><Encrypt>{refs}</Encrypt></xml>"
    ).encode()


def _deep_nesting() -> bytes:
    """No DTD, just 250 KB of nested elements (the largest body the adapter parses)."""
    depth = 250 * 1024 // 7
    return b"<xml>" + b"<a>" * depth + b"</a>" * depth + b"</xml>"


def payloads() -> dict[str, tuple[dict[str, str], bytes]]:
    crypto = WecomCrypto(TOKEN, AES_KEY, CORP_ID)
    encrypt = crypto.encrypt((DATA / "text.xml").read_bytes())
    signed = {
        "msg_signature": crypto.signature("1700000000", "42", encrypt),
        "timestamp": "1700000000",
        "nonce": "42",
    }
    normal = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID>1000002</AgentID></xml>"
    ).encode()
    return {
        "normal text callback": (signed, normal),
        "billion laughs": (signed, (DATA / "billion_laughs.xml").read_bytes()),
        "XXE (file:///etc/passwd)": (signed, (DATA / "xxe.xml").read_bytes()),
        "quadratic blowup": (signed, _quadratic_blowup()),
        "deep nesting, 250 KB": (signed, _deep_nesting()),
        "flood of 35,000 elements": (signed, b"<xml>" + b"<a/>" * 35_000 + b"</xml>"),
        "1 MB of junk": (signed, b"<xml>" + b"A" * 1_000_000 + b"</xml>"),
    }


class _NoHooks:
    async def opening_statement(self, message: InboundMessage) -> str | None:
        return None

    async def feedback(self, job_id: str, rating: Literal["like", "dislike"] | None) -> None:
        return None


async def _deliver(read: Read) -> Delivery:
    return Delivery.ACK  # the WeCom app has no long connection


async def _time(rounds: int, call: Callable[[], Awaitable[str]]) -> tuple[list[float], str]:
    samples, result = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def _row(name: str, where: str, samples: list[float], result: str) -> str:
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return (
        f"| {name} | {where} | {result} | {statistics.median(samples):.3f} | {p99:.3f} "
        f"| {samples[-1]:.3f} |"
    )


async def main(rounds: int) -> None:
    logging.disable(logging.CRITICAL)  # the gateway logs every rejected webhook
    print(f"Python {sys.version.split()[0]}, rounds: handle() {rounds}, HTTP {rounds // 10}\n")
    print("| payload | path | result | median ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    async with httpx.AsyncClient() as http:
        context = AdapterContext(
            http=http,
            store=MemoryStore(),
            budget=BotBudget(),
            deliver=_deliver,
            assistant=_NoHooks(),
        )
        adapter = WecomAppAdapter("wecom-it", WecomBot.model_validate(BOT), context)
        config = parse_config(
            {
                "store": "memory://",
                "dify": {"apps": {"main": {"api_key": "k", "base_url": "http://127.0.0.1:9"}}},
                "bots": {"wecom-it": BOT},
            },
            env={},
        )
        gateway = Gateway(config)
        client: TestClient[Any, Any] = TestClient(GatewayTestServer(gateway))
        await client.start_server()
        try:
            for name, (query, body) in payloads().items():

                async def direct(query: dict[str, str] = query, body: bytes = body) -> str:
                    request = WebhookRequest("POST", "/webhooks/wecom-it", query, {}, body, 0.0)
                    try:
                        outcome = await adapter.handle(request)
                    except WebhookRejected as exc:
                        return str(exc.status)
                    return type(outcome).__name__

                async def over_http(query: dict[str, str] = query, body: bytes = body) -> str:
                    response = await client.post("/webhooks/wecom-it", params=query, data=body)
                    await response.read()
                    return str(response.status)

                print(_row(name, "handle()", *await _time(rounds, direct)))
                # Each normal callback is a new MsgId only once; repeats are acked duplicates.
                print(_row(name, "HTTP", *await _time(max(1, rounds // 10), over_http)))
        finally:
            await client.close()
    bomb = (DATA / "billion_laughs.xml").read_bytes()
    started = time.perf_counter()
    try:
        StdET.fromstring(bomb)
        outcome = "parsed (expanded!)"
    except StdET.ParseError as exc:
        outcome = f"ParseError after expanding ({str(exc)[:40]}…)"
    took = (time.perf_counter() - started) * 1000
    print(f"\nFor scale: stdlib ElementTree on the billion laughs: {outcome}, {took:.1f} ms.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
