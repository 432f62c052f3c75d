"""How an answer ends (gateway/relay/failures.py): finished when the run went well, else the
failure's words under what was shown and its result label; a store that is away ends the
attempt without a word, for the inbox to try again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.attachments import AttachmentFailed
from gateway.config import DifyApp
from gateway.dify import DifyHTTPError, DifyUnavailable
from gateway.metrics import Metrics
from gateway.relay.failures import finish_or_fail
from gateway.store.base import StoreUnavailable
from gateway.words import ENGLISH
from tests.helpers import group_job

APP = DifyApp(api_key="k", timeout_s=0.05)  # type: ignore[arg-type]


class Stream:
    """What finish_or_fail does to the answer's stream."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def finish(self) -> None:
        self.calls.append(("finish", ""))

    async def fail(self, notice: str) -> None:
        self.calls.append(("fail", notice))

    def abandon(self) -> None:
        self.calls.append(("abandon", ""))


async def end(stream: Stream, metrics: Metrics, ask: Any) -> tuple[str, Any]:
    return await finish_or_fail(
        group_job("U1"),
        APP,
        stream,  # type: ignore[arg-type]
        words=ENGLISH,
        metrics=metrics,
        ask=ask,
    )


def dify_errors(metrics: Metrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value(
        "dify_gateway_dify_errors_total", {"app": "main", "kind": kind}
    )


async def test_a_run_that_went_well_finishes_the_answer_and_returns_what_it_asked() -> None:
    stream, metrics = Stream(), Metrics()

    async def ask() -> str:
        return "record"

    assert await end(stream, metrics, ask) == ("ok", "record")
    assert stream.calls == [("finish", "")]
    assert dify_errors(metrics, "deadline") is None


async def test_a_run_past_the_app_s_deadline_says_it_was_too_slow() -> None:
    stream, metrics = Stream(), Metrics()

    async def ask() -> None:
        await asyncio.sleep(10)

    assert await end(stream, metrics, ask) == ("deadline", None)
    assert stream.calls == [("fail", ENGLISH.too_slow)]
    assert dify_errors(metrics, "deadline") == 1.0


@pytest.mark.parametrize(
    ("error", "result", "words", "kind"),
    [
        (DifyUnavailable("down"), "dify_error", ENGLISH.dify_unavailable, "DifyUnavailable"),
        (
            DifyHTTPError(401, "unauthorized", "no"),
            "dify_error",
            ENGLISH.dify_misconfigured,
            "DifyHTTPError",
        ),
        (AttachmentFailed(), "attachment_error", ENGLISH.unreadable_file, None),
        (ValueError("a bug"), "error", ENGLISH.something_went_wrong, None),
    ],
)
async def test_a_failure_ends_the_answer_with_its_words(
    error: Exception, result: str, words: str, kind: str | None
) -> None:
    stream, metrics = Stream(), Metrics()

    async def ask() -> None:
        raise error

    assert await end(stream, metrics, ask) == (result, None)
    assert stream.calls == [("fail", words)]
    if kind is not None:
        assert dify_errors(metrics, kind) == 1.0


async def test_a_store_away_ends_the_attempt_without_a_word_for_the_inbox_to_retry() -> None:
    stream, metrics = Stream(), Metrics()

    async def ask() -> None:
        raise StoreUnavailable("redis down")

    with pytest.raises(StoreUnavailable):
        await end(stream, metrics, ask)
    assert stream.calls == [("abandon", "")]
