"""The streaming engine against a recording sink: pacing, shared budgets, rollover,
paragraph parts for sinks that cannot edit, rate limits, exact final text."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway import streaming
from gateway.controls import Controls
from gateway.pacing import BotBudget
from gateway.platform import Capabilities, OutputFile, Pacing, PlatformError, RateLimited
from gateway.streaming import AnswerStream
from gateway.words import SIMPLIFIED_CHINESE


@dataclass
class FakeSink:
    pacing: Pacing = field(default_factory=lambda: Pacing(0.2, "test", 100.0))
    calls: list[tuple[float, str, str]] = field(default_factory=list)  # (when, kind, text)
    fail_updates: list[Exception] = field(default_factory=list)
    fail_finishes: list[Exception] = field(default_factory=list)
    statuses: list[str | None] = field(default_factory=list)  # the status of each update
    files: list[OutputFile] = field(default_factory=list)
    refuse_files: bool = False
    folded: str = ""

    async def begin(self) -> None:
        self.calls.append((time.monotonic(), "begin", ""))

    async def update(self, text: str, status: str | None = None) -> None:
        if self.fail_updates:
            raise self.fail_updates.pop(0)
        self.calls.append((time.monotonic(), "update", text))
        self.statuses.append(status)

    async def finish(self, text: str, *, last: bool) -> None:
        if self.fail_finishes:
            raise self.fail_finishes.pop(0)
        self.calls.append((time.monotonic(), "last" if last else "part", text))

    async def fail(self, text: str) -> None:
        self.calls.append((time.monotonic(), "fail", text))

    async def send_files(self, files: Sequence[OutputFile]) -> list[OutputFile]:
        if self.refuse_files:
            return list(files)
        self.files.extend(files)
        return []

    def fold_reasoning(self, text: str) -> None:
        self.folded = text

    def snapshot(self) -> dict[str, Any]:
        return {"parts": sum(1 for c in self.calls if c[1] == "part")}

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.calls]

    def texts(self, *kinds: str) -> list[str]:
        return [text for _, kind, text in self.calls if kind in kinds]


def caps(can_edit: bool = True, limit: int = 1000, unit: str = "chars") -> Capabilities:
    return Capabilities(
        can_edit=can_edit,
        max_message=limit,
        unit=unit,  # type: ignore[arg-type]
        pacing=Pacing(0.2, "test", 100.0),
    )


async def feed(stream: AnswerStream, chunks: list[str], delay: float) -> None:
    for chunk in chunks:
        stream.append(chunk)
        await asyncio.sleep(delay)


async def test_begin_then_paced_growing_updates_then_the_exact_final_text() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    chunks = [f"w{i} " for i in range(40)]
    await feed(stream, chunks, 0.03)
    await stream.finish()
    assert sink.kinds()[0] == "begin"
    updates = [c for c in sink.calls if c[1] == "update"]
    assert len(updates) >= 3
    assert all(b[0] - a[0] >= 0.19 for a, b in itertools.pairwise(updates))
    assert all(b[2].startswith(a[2]) for a, b in itertools.pairwise(updates))
    assert sink.texts("last") == ["".join(chunks)]


async def test_the_final_text_does_not_wait_for_the_interval() -> None:
    sink = FakeSink(pacing=Pacing(5.0, "test", 100.0))
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("quick")
    started = time.monotonic()
    await stream.finish()
    assert time.monotonic() - started < 0.5
    assert sink.texts("last") == ["quick"]


async def test_answers_sharing_a_budget_each_update_less_often() -> None:
    budget = BotBudget()
    shared = Pacing(0.1, "shared", 4.0)  # 4 updates a second for the whole bot
    sinks = [FakeSink(pacing=shared) for _ in range(4)]
    streams = [AnswerStream(s, caps(), budget) for s in sinks]
    for stream in streams:
        await stream.begin()
    await asyncio.gather(*(feed(s, [f"{i} " for i in range(30)], 0.05) for s in streams))
    for stream in streams:
        await stream.finish()
    total = sum(len(s.texts("update")) for s in sinks)
    # 1.5 s of streaming at 4 updates/s for the bot, shared by four answers.
    assert total <= 4 * 1.5 + 4
    for sink in sinks:
        stamps = [when for when, kind, _ in sink.calls if kind == "update"]
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(stamps))


async def test_a_long_answer_rolls_over_before_the_limit() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(limit=100), BotBudget())
    await stream.begin()
    text = "".join(f"sentence number {i}. " for i in range(40))
    await feed(stream, [text[i : i + 37] for i in range(0, len(text), 37)], 0.01)
    await stream.finish()
    parts = sink.texts("part", "last")
    assert len(parts) >= 8
    assert "".join(parts) == text
    assert all(len(p) <= 100 for p in parts + sink.texts("update"))
    assert sink.kinds()[-1] == "last"


async def test_a_sink_that_cannot_edit_gets_finished_paragraphs() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(can_edit=False, limit=2048, unit="bytes"), BotBudget())
    await stream.begin()
    paragraphs = [f"Paragraph {i}: " + "words " * 70 + "\n\n" for i in range(4)]
    await feed(stream, paragraphs, 0.3)
    await stream.finish()
    assert "update" not in sink.kinds()
    parts = sink.texts("part")
    assert parts and all(p.endswith("\n\n") for p in parts)
    assert "".join(sink.texts("part", "last")) == "".join(paragraphs)


async def test_a_short_answer_on_a_sink_that_cannot_edit_is_one_message() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(can_edit=False), BotBudget())
    await stream.begin()
    await feed(stream, ["Short ", "answer.\n\n", "Done."], 0.1)
    await stream.finish()
    assert sink.kinds() == ["begin", "last"]


async def test_a_rate_limit_pauses_updates_and_the_final_text_still_arrives() -> None:
    budget = BotBudget()
    sink = FakeSink(
        fail_updates=[RateLimited("test", 0.6)], fail_finishes=[RateLimited("test", 0.3)]
    )
    stream = AnswerStream(sink, caps(), budget)
    await stream.begin()
    limited_at = time.monotonic()
    await feed(stream, [f"{i} " for i in range(20)], 0.05)
    await stream.finish()
    later = [when for when, kind, _ in sink.calls if kind in ("update", "last")]
    assert all(when - limited_at >= 0.55 for when in later)
    assert sink.texts("last") == ["".join(f"{i} " for i in range(20))]


async def test_a_failing_update_does_not_lose_the_answer() -> None:
    sink = FakeSink(
        fail_updates=[PlatformError("test", "boom")] * 3,
        fail_finishes=[PlatformError("test", "transient")],
    )
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    await feed(stream, ["a", "b", "c"], 0.25)
    await stream.finish()
    assert sink.texts("last") == ["abc"]


async def test_fail_keeps_the_partial_text_and_adds_the_notice() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("Half an answer")
    await stream.fail("Sorry, it broke.")
    assert sink.texts("fail") == ["Half an answer\n\nSorry, it broke."]
    empty = FakeSink()
    stream = AnswerStream(empty, caps(), BotBudget())
    await stream.begin()
    await stream.fail("Sorry, it broke.")
    assert empty.texts("fail") == ["Sorry, it broke."]


async def test_an_empty_answer_says_so_and_replace_rewrites() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    await stream.finish()
    assert sink.texts("last") == ["_(The assistant returned an empty answer.)_"]
    chinese = FakeSink()
    stream = AnswerStream(
        chinese, caps(), BotBudget(), empty_answer=SIMPLIFIED_CHINESE.empty_answer
    )
    await stream.begin()
    await stream.finish()
    assert chinese.texts("last") == [SIMPLIFIED_CHINESE.empty_answer]
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("something unsafe")
    stream.replace("Moderated answer.")
    await stream.finish()
    assert sink.texts("last") == ["Moderated answer."]


async def test_checkpoints_follow_each_new_message() -> None:
    saved: list[dict[str, Any]] = []

    async def checkpoint(snapshot: dict[str, Any]) -> None:
        saved.append(snapshot)

    sink = FakeSink()
    stream = AnswerStream(sink, caps(limit=50), BotBudget(), checkpoint=checkpoint)
    await stream.begin()
    stream.append("x " * 80)
    await stream.finish()
    assert saved[0] == {"parts": 0}
    assert saved[-1]["parts"] >= 2


# --- the status, files, folded reasoning and the footer -----------------------------------


async def test_a_status_takes_the_placeholders_place_and_never_stays() -> None:
    sink = FakeSink(pacing=Pacing(0.05, "test", 100.0))
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.set_status("Using web_search…")
    await asyncio.sleep(0.12)
    stream.set_status(None)  # the tool answered: back to thinking
    await asyncio.sleep(0.12)
    stream.set_status("Using calculator…")
    await asyncio.sleep(0.12)
    stream.append("The answer")
    stream.set_status(None)
    await asyncio.sleep(0.12)
    stream.set_status("Using calculator…")  # a tool after text started: under the text
    await asyncio.sleep(0.12)
    await stream.finish()
    updates = list(zip(sink.texts("update"), sink.statuses, strict=True))
    assert updates == [
        ("", "Using web_search…"),
        ("", None),
        ("", "Using calculator…"),
        ("The answer", None),
        ("The answer", "Using calculator…"),
    ]
    assert sink.texts("last") == ["The answer"]


async def test_no_status_means_no_update_before_text() -> None:
    sink = FakeSink(pacing=Pacing(0.05, "test", 100.0))
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.set_status(None)
    stream.append("   ")
    await asyncio.sleep(0.12)
    assert sink.kinds() == ["begin"]


async def test_a_sink_that_cannot_edit_never_sees_a_status() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(can_edit=False), BotBudget())
    await stream.begin()
    stream.set_status("Using web_search…")
    await asyncio.sleep(0.3)
    stream.append("Done.")
    await stream.finish()
    assert sink.kinds() == ["begin", "last"] and sink.statuses == []


async def test_files_reasoning_and_the_footer_go_with_the_final_message() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("Here is the chart.")
    chart = OutputFile(b"png", "chart.png", "image/png")
    stream.attach_files([chart], lambda f: f"(no {f.name})")
    stream.fold_reasoning("I thought about it.")
    stream.set_footer("*42 tokens*")
    await stream.finish()
    assert sink.files == [chart] and sink.folded == "I thought about it."
    assert sink.texts("last") == ["Here is the chart.\n\n*42 tokens*"]


async def test_files_the_sink_refuses_are_named_in_the_text() -> None:
    sink = FakeSink(refuse_files=True)
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("Report:")
    stream.attach_files([OutputFile(b"x", "r.xlsx", "application/x")], lambda f: f"- {f.name}")
    await stream.finish()
    assert sink.texts("last") == ["Report:\n\n- r.xlsx"]


async def test_a_failed_answer_carries_no_files_or_footer() -> None:
    sink = FakeSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("Half")
    stream.attach_files([OutputFile(b"x", "a.png", "image/png")], lambda f: f.name)
    stream.set_footer("*footer*")
    await stream.fail("Sorry.")
    assert sink.files == [] and sink.texts("fail") == ["Half\n\nSorry."]


# --- buttons: a Stop for answers that take a while ------------------------------------------


@dataclass
class ButtonSink(FakeSink):
    """A sink that shows buttons (`ShowsControls`), posting a Stop when told it is due."""

    stop_posted: bool = False
    amended: list[Controls] = field(default_factory=list)

    def offer(self, controls: Controls) -> None:
        self.calls.append((time.monotonic(), "offer", ""))

    async def show(self, controls: Controls) -> None:
        raise AssertionError("show is for a click's sink")

    async def amend(self, controls: Controls) -> None:
        if self.fail_updates:
            raise self.fail_updates.pop(0)
        self.amended.append(controls)

    async def still_running(self) -> None:
        self.calls.append((time.monotonic(), "still_running", ""))
        self.stop_posted = True

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "stop": self.stop_posted}


async def test_an_answer_still_running_after_the_delay_is_told_so_once_and_checkpointed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "STOP_AFTER_S", 0.2)
    saved: list[dict[str, Any]] = []

    async def checkpoint(snapshot: dict[str, Any]) -> None:
        saved.append(snapshot)

    sink = ButtonSink()
    stream = AnswerStream(sink, caps(), BotBudget(), checkpoint=checkpoint)
    await stream.begin()
    await feed(stream, ["a ", "b ", "c ", "d "], 0.1)
    await stream.finish()
    assert sink.kinds().count("still_running") == 1
    # The Stop's message is in a checkpoint before the end: a takeover can clean it up.
    assert saved[-1]["stop"] is True
    assert sink.kinds()[-1] == "last"


async def test_a_quick_answer_is_never_told_it_is_still_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "STOP_AFTER_S", 0.3)
    sink = ButtonSink()
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("quick")
    await stream.finish()
    await asyncio.sleep(0.4)  # past the delay: the ended answer's timer is gone
    assert "still_running" not in sink.kinds()


async def test_amend_is_best_effort() -> None:
    sink = ButtonSink(fail_updates=[PlatformError("test", "boom")])
    stream = AnswerStream(sink, caps(), BotBudget())
    await stream.begin()
    stream.append("text")
    await stream.finish()
    await stream.amend(Controls("bot:1", suggestions=("Why?",)))  # refused: logged, no raise
    await stream.amend(Controls("bot:1", suggestions=("Why?",)))
    assert [c.suggestions for c in sink.amended] == [("Why?",)]


async def test_an_abandoned_attempt_calls_the_sink_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streaming, "STOP_AFTER_S", 0.1)
    sink = ButtonSink()
    budget = BotBudget()
    stream = AnswerStream(sink, caps(), budget)
    await stream.begin()
    stream.append("some text")
    stream.abandon()  # the inbox tries the job again, in another attempt
    await asyncio.sleep(0.4)
    assert sink.kinds() == ["begin"]
    assert budget.interval(sink.pacing) == BotBudget().interval(sink.pacing)  # left it
