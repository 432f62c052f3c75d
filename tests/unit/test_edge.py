"""The HTTP edge's failure answers: store down -> 503, adapter bug -> 400, never a 500;
and secrets never reach the logs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.emulator import DifyEmulator
from gateway.logs import MASK, RedactSecrets, config_secrets
from gateway.models import Job
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
