"""What operators read: platform API errors counted once at the outbound path, the JSON log
format (one object per line, secrets masked), and the message life lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway import lifelog, outbound
from gateway.dify import trace_id_header
from gateway.logs import JsonLines, RedactSecrets
from gateway.metrics import Metrics
from gateway.models import ChatType, InboundMessage, Job
from gateway.outbound import Answer, JsonApi
from gateway.platform import PlatformError, RateLimited


def _check(answer: Answer) -> dict[str, object]:
    if answer.body is None or answer.body.get("ok") is not True:
        raise PlatformError("fake", str((answer.body or {}).get("error", "bad")), answer.what)
    return answer.body


API = JsonApi("fake", _check, error_code=lambda b: b.get("error"), rate_limit_codes={"slow": 3})


def errors_of(metrics: Metrics) -> dict[str, float]:
    counted: dict[str, float] = {}
    for line in metrics.render().decode().splitlines():
        if line.startswith("dify_gateway_platform_api_errors_total{"):
            labels, value = line.rsplit(" ", 1)
            counted[labels.split("{", 1)[1].rstrip("}")] = float(value)
    return counted


@pytest.fixture
def clean_errors() -> Iterator[None]:
    saved = outbound.ERRORS.copy()
    outbound.ERRORS.clear()
    yield
    outbound.ERRORS.clear()
    outbound.ERRORS.update(saved)


async def test_platform_errors_are_counted_once_by_platform_and_code(clean_errors: None) -> None:
    answers = iter(
        [
            httpx.Response(200, json={"ok": False, "error": "channel_not_found"}),
            httpx.Response(200, json={"ok": False, "error": "slow"}),
            httpx.Response(429),
            httpx.Response(200, json={"ok": True}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("down", request=request) from None

    metrics = Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        for expected in (PlatformError, RateLimited, RateLimited, None, PlatformError):
            if expected is None:
                assert await API.send(http, "POST", "https://x.test/a", what="a") == {"ok": True}
                continue
            with pytest.raises(expected):
                await API.send(http, "POST", "https://x.test/a", what="a")
    assert errors_of(metrics) == {
        'code="channel_not_found",platform="fake"': 1.0,
        'code="network",platform="fake"': 1.0,
        'code="rate_limited",platform="fake"': 1.0,
        'code="slow",platform="fake"': 1.0,
    }


def test_a_long_error_code_is_cut_not_a_new_label(clean_errors: None) -> None:
    outbound.counted(PlatformError("fake", "x" * 500))
    ((platform, code),) = outbound.ERRORS
    assert platform == "fake" and len(code) == outbound.MAX_CODE


def json_logger(secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines())
    handler.addFilter(RedactSecrets(secrets))
    logger = logging.getLogger(f"test.json.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_have_the_fields_and_mask_secrets() -> None:
    logger, out = json_logger(["xoxb-secret-token"])
    logger.info("plain line with %s", "xoxb-secret-token")
    logger.warning("with context", extra={"bot": "s", "event": "bot_up", "chat": "C1"})
    try:
        raise RuntimeError("failed with xoxb-secret-token\nsecond line")
    except RuntimeError:
        logger.exception("it broke")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3  # a traceback stays inside its line
    first, second, third = lines
    assert set(first) >= {"time", "level", "logger", "bot", "chat", "trace_id", "event", "message"}
    assert first["message"] == "plain line with ***" and first["bot"] is None
    assert first["time"].endswith("Z") and first["level"] == "INFO"
    assert (second["bot"], second["event"], second["chat"]) == ("s", "bot_up", "C1")
    assert "xoxb-secret-token" not in out.getvalue()
    assert "RuntimeError" in third["message"] + third.get("exc", "")


def test_json_lines_without_secrets_keep_the_traceback_apart() -> None:
    logger, out = json_logger([])
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it broke")
    (line,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert line["message"] == "it broke" and "ValueError: boom" in line["exc"]


def a_job() -> Job:
    message = InboundMessage(
        bot="s",
        platform="slack",
        event_id="Ev1",
        message_id="D1:1.1",
        chat_id="D1",
        chat_type=ChatType.DIRECT,
        user_id="U1",
        text="secret question text",
        received_at=time.time(),
    )
    return Job(
        job_id="s:D1:1.1 é",
        message=message,
        app="main",
        scope="user",
        conversation_key="k",
        dify_user="s:U1",
        accepted_at=time.time(),
    )


def test_life_lines_carry_the_dify_trace_id_and_never_the_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.message")
    job = a_job()
    lifelog.accepted(job)
    lifelog.first_token(job, 0.25)
    lifelog.first_update(job, 0.1)
    lifelog.finished(job, "ok", 1.5)
    lifelog.finished(job, "dify_error", 2.0)
    records = caplog.records
    assert [r.event for r in records] == [  # type: ignore[attr-defined]
        "accepted",
        "first_token",
        "first_update",
        "delivered",
        "failed",
    ]
    trace = trace_id_header(job.job_id)
    assert trace != job.job_id  # made a valid header: the same value as X-Trace-Id
    assert {r.trace_id for r in records} == {trace}  # type: ignore[attr-defined]
    assert records[1].dify_s == 0.25  # type: ignore[attr-defined]
    assert records[4].levelno == logging.WARNING
    assert f"trace_id={trace}" in records[0].getMessage()
    assert "secret question text" not in caplog.text


async def test_the_accepted_line_waits_for_the_loop_but_keeps_its_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.message")
    job = a_job()
    before = time.time()
    lifelog.accepted(job)  # on the ack path: nothing written yet
    assert caplog.records == []
    await asyncio.sleep(0)
    (record,) = caplog.records
    assert record.event == "accepted"  # type: ignore[attr-defined]
    assert before <= record.created <= time.time()
