"""The HTTP edge's failure answers: store down -> 503, adapter bug -> 400, never a 500;
and secrets never reach the logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.emulator import DifyEmulator
from gateway.logs import MASK, RedactSecrets, config_secrets
from gateway.models import Job
from gateway.platform import MalformedRequest
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import body_of, direct, envelope, signed_headers, slack_bot


class BrokenStore(MemoryStore):
    async def accept(self, keys: Sequence[str], job: Job, ttl: float = 0) -> bool:
        raise StoreUnavailable("redis: connection refused")

    async def ping(self) -> None:
        raise StoreUnavailable("redis: connection refused")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_store_outage_answers_503_so_the_platform_retries(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await gateway_factory(
        make_config(dify, {"s": slack_bot(slack)}), store=BrokenStore()
    )
    await wait_for(lambda: gateway.adapters["s"].ready)
    body = body_of(envelope(direct("hello")))
    response = await client.post("/webhooks/s", data=body, headers=signed_headers(body))
    assert response.status == 503
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "store" in (await ready.json())["problems"][0]


async def test_an_adapter_bug_is_a_400_not_a_500(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))

    async def broken(request: object) -> object:
        raise KeyError("a field the adapter assumed")

    monkeypatch.setattr(gateway.adapters["s"], "handle", broken)
    response = await client.post("/webhooks/s", data=b"{}")
    assert response.status == 400
    assert "Traceback" not in await response.text()


def test_secrets_are_masked_in_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(
        DifyEmulator(api_key="dify-secret-key", base_url="http://x/v1"),
        {
            "s": {
                "platform": "slack",
                "app": "main",
                "signing_secret": "sign-123",
                "bot_token": "xoxb-very-secret",
            }
        },
    )
    from gateway.config import parse_config

    secrets = config_secrets(parse_config(config, env={}))
    assert set(secrets) >= {"dify-secret-key", "sign-123", "xoxb-very-secret"}
    logger = logging.getLogger("test.redact")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactSecrets(secrets))
    logger.addHandler(handler)
    try:
        logger.warning("calling with token %s", "xoxb-very-secret")
        try:
            raise RuntimeError("bad key dify-secret-key")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records[0] == f"calling with token {MASK}"
    assert "dify-secret-key" not in records[1] and MASK in records[1]


async def test_the_route_table_answers_unknown_paths_and_methods_plainly(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _ = await gateway_factory(
        make_config(
            dify,
            {"s": slack_bot(slack), "sock": slack_bot(slack, mode="socket", app_token="xapp-1")},
        )
    )
    assert (await client.post("/webhooks/nobody", data=b"{}")).status == 404
    # A bot on a long connection takes no webhooks: its path is unknown too.
    assert (await client.post("/webhooks/sock", data=b"{}")).status == 404
    assert (await client.get("/nothing-here")).status == 404
    wrong = await client.delete("/webhooks/s")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET, POST"
    assert (await client.post("/healthz")).status == 405
    assert (await client.head("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


async def test_a_client_that_expects_100_continue_gets_it_and_is_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    await wait_for(lambda: gateway.adapters["s"].ready)
    body = body_of(envelope(direct("hello")))
    response = await client.post(
        "/webhooks/s", data=body, headers=signed_headers(body), expect100=True
    )
    assert response.status == 200
    await wait_for(lambda: len(dify.requests) == 1)


async def test_a_chunked_body_over_the_limit_is_413_not_read_to_the_end(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _ = await gateway_factory(
        make_config(dify, {"s": slack_bot(slack)}, server={"max_body_bytes": 2048})
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024  # no Content-Length: sent chunked

    response = await client.post("/webhooks/s", data=chunks())
    assert response.status == 413
    assert dify.requests == []


# --- hostile input: one log line per refusal, never a traceback, never a flood ------------


def edge_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in ("gateway.http", "gateway.connections")]


async def test_a_body_that_does_not_decode_is_a_400_with_one_log_line(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    caplog.set_level(logging.INFO)
    cases = [
        ("gzip", b"this is not gzip"),  # aiohttp fails while decoding it
        ("deflate", b"\x00\x01 nor this deflate"),
        ("x-unknown", b"{}"),  # aiohttp would hand it over still encoded
        ("gzip, gzip", b"{}"),
    ]
    for encoding, body in cases:
        caplog.clear()
        response = await client.post(
            "/webhooks/s", data=body, headers={"Content-Encoding": encoding}
        )
        assert response.status == 400, encoding
        assert await response.json() == {"error": "bad request"}
        (line,) = edge_records(caplog)
        assert line.exc_info is None and "\n" not in line.getMessage()
        assert "(400)" in line.getMessage()
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # ... and the gateway serves on.
    assert (await client.get("/healthz")).status == 200


async def test_rejections_log_one_line_each_at_most_ten_a_minute(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    caplog.set_level(logging.INFO)
    for _ in range(15):
        assert (await client.post("/webhooks/s", data=b"{}")).status == 401  # not signed
    for _ in range(3):
        assert (await client.delete("/webhooks/s")).status == 405
    for _ in range(3):
        assert (await client.get("/wp-login.php\r\nX-Forged: 1")).status == 404
    lines = [r.getMessage() for r in edge_records(caplog)]
    assert not [r for r in edge_records(caplog) if r.exc_info]
    assert len([m for m in lines if m.startswith("bot s: rejected webhook (401)")]) == 10
    assert len([m for m in lines if m.startswith("bot s: rejected webhook (405)")]) == 3
    not_found = [m for m in lines if m.startswith("refused request (404)")]
    assert len(not_found) == 3
    assert all("\r" not in m and "\n" not in m for m in lines)


async def test_a_rejection_reason_stays_on_one_line(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))

    async def rejects(request: object) -> object:
        raise MalformedRequest("field 'x' was 'a\n2026-01-01 INFO forged line'" + "y" * 500)

    monkeypatch.setattr(gateway.adapters["s"], "handle", rejects)
    caplog.set_level(logging.INFO)
    assert (await client.post("/webhooks/s", data=b"{}")).status == 400
    (line,) = edge_records(caplog)
    assert "\n" not in line.getMessage() and "\\n2026-01-01" in line.getMessage()
    assert len(line.getMessage()) < 300


async def test_an_adapter_bug_logs_one_traceback_a_minute_then_single_lines(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, gateway = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))

    async def broken(request: object) -> object:
        raise KeyError("a field the adapter assumed")

    monkeypatch.setattr(gateway.adapters["s"], "handle", broken)
    for _ in range(4):
        assert (await client.post("/webhooks/s", data=b"{}")).status == 400
    lines = edge_records(caplog)
    assert len(lines) == 4
    assert lines[0].exc_info is not None  # enough to debug it ...
    assert all(r.exc_info is None for r in lines[1:])  # ... once
    assert all("KeyError" in r.getMessage() for r in lines[1:])


async def test_malformed_http_is_a_400_with_one_line_and_no_traceback(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = await gateway_factory(make_config(dify, {"s": slack_bot(slack)}))
    caplog.set_level(logging.INFO)
    port = client.server.port
    garbage = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # TLS hello
        b"POST /webhooks/s HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /webhooks/s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
    ]
    for raw in garbage:
        caplog.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.split(b" ", 2)[1] in (b"400", b"413", b"431"), raw[:40]
        assert b"Traceback" not in answer
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
        assert len(edge_records(caplog)) == 1
    assert (await client.get("/healthz")).status == 200
