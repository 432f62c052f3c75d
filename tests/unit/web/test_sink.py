"""The web reply sink and the mailbox behind it: every frame reaches the user's channel and
stays replayable (the latest per answer) for a socket that reconnects."""

from __future__ import annotations

import asyncio
import json

import pytest

from adapters.web import mailbox as mailbox_module
from adapters.web.mailbox import Mailbox, Record
from adapters.web.sink import WebReplySink
from gateway.platform import OutputFile, PlatformError
from gateway.store import keys
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore


async def next_record(subscription: object) -> Record:
    async with asyncio.timeout(2):
        data = await anext(aiter(subscription))  # type: ignore[call-overload]
    record = Record.decode(data)
    assert record is not None
    return record


async def test_a_sink_posts_thinking_updates_and_the_final_frame() -> None:
    store = MemoryStore()
    mailbox = Mailbox(store, "web")
    listening = await mailbox.listen("u1")
    sink = WebReplySink(mailbox, "u1", "m1", None)
    await sink.begin()
    await sink.update("Hel")
    await sink.update("Hello")
    await sink.finish("Hello!", last=True)
    got = [await next_record(listening) for _ in range(4)]
    assert [r.frame for r in got] == [
        {"type": "update", "reply_to": "m1", "text": "", "status": ""},
        {"type": "update", "reply_to": "m1", "text": "Hel", "status": ""},
        {"type": "update", "reply_to": "m1", "text": "Hello", "status": ""},
        {"type": "final", "reply_to": "m1", "text": "Hello!"},
    ]
    assert [r.seq for r in got] == sorted({r.seq for r in got})  # strictly growing
    owed = await mailbox.owed("u1")
    assert [r.frame for r in owed] == [got[-1].frame]  # only the latest of each answer
    await listening.aclose()


async def test_a_failed_answer_ends_with_an_error_frame() -> None:
    store = MemoryStore()
    mailbox = Mailbox(store, "web")
    sink = WebReplySink(mailbox, "u1", "m1", None)
    await sink.begin()
    await sink.fail("Partial\n\nSorry, the assistant stopped responding.")
    (record,) = await mailbox.owed("u1")
    assert record.frame == {
        "type": "error",
        "reply_to": "m1",
        "message": "Partial\n\nSorry, the assistant stopped responding.",
    }


async def test_the_replay_holds_every_answer_owed_oldest_first_and_forgets_after_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mailbox_module, "KEEP_DONE_S", 0.2)
    store = MemoryStore()
    mailbox = Mailbox(store, "web")
    first, second = WebReplySink(mailbox, "u1", "m1", None), WebReplySink(mailbox, "u1", "m2", None)
    await first.begin()
    await second.begin()
    await second.update("still writing")
    await first.finish("done", last=True)
    owed = await mailbox.owed("u1")
    assert [(r.reply_to, r.frame["type"]) for r in owed] == [("m1", "final"), ("m2", "update")]
    assert await mailbox.owed("someone-else") == []
    await asyncio.sleep(0.3)
    assert [r.reply_to for r in await mailbox.owed("u1")] == ["m2"]  # the final one expired


async def test_a_rollover_keeps_one_bubble_and_survives_a_takeover() -> None:
    store = MemoryStore()
    mailbox = Mailbox(store, "web")
    sink = WebReplySink(mailbox, "u1", "m1", None)
    await sink.begin()
    await sink.finish("part one", last=False)
    await sink.update("part two")
    taken_over = WebReplySink(mailbox, "u1", "m1", sink.snapshot())
    await taken_over.finish("part two, done", last=True)
    (record,) = await mailbox.owed("u1")
    assert record.frame["text"] == "part one\npart two, done"


async def test_an_unreadable_index_starts_afresh() -> None:
    store = MemoryStore()
    await store.set(keys.web_owed("web", "u1"), "{not json")
    mailbox = Mailbox(store, "web")
    assert await mailbox.owed("u1") == []
    await WebReplySink(mailbox, "u1", "m1", None).begin()
    assert json.loads(await store.get(keys.web_owed("web", "u1")) or "") == ["m1"]


async def test_a_store_outage_is_a_platform_error_the_engine_retries() -> None:
    class DownStore(MemoryStore):
        async def set(self, key: str, value: str, ttl: float | None = None) -> None:
            raise StoreUnavailable("down")

    sink = WebReplySink(Mailbox(DownStore(), "web"), "u1", "m1", None)
    with pytest.raises(PlatformError):
        await sink.begin()
    with pytest.raises(PlatformError):
        await sink.finish("x", last=True)


def test_records_that_are_not_ours_are_dropped() -> None:
    assert Record.decode("nope") is None
    assert Record.decode('{"seq": 1}') is None
    assert Record.decode('{"seq": "x", "frame": {}}') is None
    assert Record.decode('{"seq": 1, "frame": {"type": "final"}}') is None  # no reply_to


async def test_the_status_rides_on_the_update_frames_and_files_are_named() -> None:
    store = MemoryStore()
    mailbox = Mailbox(store, "web")
    listening = await mailbox.listen("u1")
    sink = WebReplySink(mailbox, "u1", "m2", None)
    await sink.begin()
    await sink.update("", "Using web_search…")
    await sink.update("Found", None)
    got = [await next_record(listening) for _ in range(3)]
    assert [(r.frame["text"], r.frame["status"]) for r in got] == [
        ("", ""),
        ("", "Using web_search…"),
        ("Found", ""),
    ]
    chart = OutputFile(b"png", "chart.png", "image/png")
    assert await sink.send_files([chart]) == [chart]
    await listening.aclose()
