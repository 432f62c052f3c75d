"""The AI-bot reply sink: what goes on the stream, what goes to the overflow path, the
stream window, and the in-flight count release. The channel is recorded here; the store
and WebSocket channels have their own tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from adapters.wecom_bot.sink import NOTE_MARGIN, StreamSink
from gateway.platform import OutputFile, Pacing, PlatformError
from gateway.text import measure
from gateway.words import CATALOGUE, ENGLISH, Words

CONTINUED = "\n\n" + ENGLISH.continued
TAKING_LONG = "\n\n" + ENGLISH.taking_long
CUT = "\n\n" + ENGLISH.cut


class Channel:
    pacing = Pacing(0.5, "test", 10.0)

    def __init__(
        self, *, once: bool = True, files: bool = False, can_overflow: bool = True
    ) -> None:
        self.overflow_once = once
        self.takes_files = files  # WebSocket mode
        self.can_overflow = can_overflow
        self.shown: list[tuple[str, bool]] = []
        self.items: list[dict[str, Any]] = []  # the msg_items of the final reply
        self.overflows: list[str] = []
        self.uploaded: list[str] = []  # file names
        self.sent: list[str] = []  # media ids, after the shown content
        self.refuse: set[str] = set()  # file names whose upload fails
        self.send_fails = False
        self.cards: list[dict[str, Any]] = []  # template cards sent after the answer
        self.card_fails = False

    async def show(
        self, content: str, *, finish: bool, items: Sequence[dict[str, Any]] = ()
    ) -> None:
        self.shown.append((content, finish))
        self.items.extend(items)

    async def overflow(self, content: str) -> None:
        self.overflows.append(content)

    async def upload_file(self, file: OutputFile) -> str:
        assert self.takes_files
        if file.name in self.refuse:
            raise PlatformError("wecom_bot", "40058")
        self.uploaded.append(file.name)
        return f"media:{file.name}"

    async def send_card(self, card: dict[str, Any]) -> None:
        if self.card_fails:
            raise PlatformError("wecom_bot", "response_url_used")
        self.cards.append(card)

    async def send_file(self, media_id: str) -> None:
        assert self.shown[-1][1], "a file goes after the finished stream"
        if self.send_fails:
            raise PlatformError("wecom_bot", "600039")
        self.sent.append(media_id)


class Harness:
    def __init__(
        self,
        *,
        once: bool = True,
        close_in: float = 60.0,
        limit: int = 1000,
        words: Words = ENGLISH,
        files: bool = False,
        can_overflow: bool = True,
    ) -> None:
        self.channel = Channel(once=once, files=files, can_overflow=can_overflow)
        self.words = words
        self.releases = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.close_at = time.time() + close_in
        self.limit = limit
        self.kept: list[Any] = []  # cards kept in the store

    def sink(self, resume: dict[str, Any] | None = None) -> StreamSink:
        async def release() -> None:
            self.releases += 1

        def spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            task = asyncio.create_task(work)
            self.tasks.append(task)
            return task

        return StreamSink(
            self.channel,
            limit=self.limit,
            close_at=self.close_at,
            release=release,
            spawn=spawn,
            thinking=self.words.thinking,
            words=self.words,
            resume=resume,
            keep_card=self.keep_card,
            asker="asker",
        )

    async def keep_card(self, card: Any) -> None:
        self.kept.append(card)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_stream_shows_thinking_then_grows_then_finishes() -> None:
    h = Harness()
    sink = h.sink()
    await sink.begin()
    await sink.update("Hel")
    await sink.update("Hello")
    await sink.finish("Hello world", last=True)
    assert h.channel.shown == [
        ("Thinking…", False),
        ("Hel", False),
        ("Hello", False),
        ("Hello world", True),
    ]
    assert h.channel.overflows == [] and h.releases == 1
    await asyncio.sleep(0)
    assert all(t.done() for t in h.tasks)  # the window timer is gone
    await h.close()


async def test_a_notice_without_begin_is_one_finished_stream() -> None:
    h = Harness()
    await h.sink().finish("Please write your question.", last=True)
    assert h.channel.shown == [("Please write your question.", True)] and h.releases == 1


async def test_rollover_closes_the_stream_and_sends_the_rest_once() -> None:
    h = Harness()
    sink = h.sink()
    await sink.begin()
    await sink.finish("part one", last=False)
    await sink.update("part tw")  # the overflow path cannot edit: nothing is sent
    await sink.finish("part two", last=False)
    await sink.finish("part three", last=True)
    assert h.channel.shown[-1] == ("part one" + CONTINUED, True)
    assert h.channel.overflows == ["part two\npart three"]  # one response_url message
    assert h.releases == 1  # released when the stream closed, not again
    await h.close()


async def test_overflow_past_one_message_is_cut_with_a_note() -> None:
    h = Harness(limit=600)
    sink = h.sink()
    await sink.finish("a" * 300, last=False)
    for _ in range(3):
        await sink.finish("word " * 60, last=False)
    await sink.finish("end", last=True)
    (sent,) = h.channel.overflows
    assert sent.endswith(CUT) and measure(sent, "bytes") <= 600


async def test_without_an_overflow_path_the_stream_says_the_answer_is_cut() -> None:
    """A refused response_url: the stream is all the answer gets, and it does not promise
    a next message that cannot come."""
    h = Harness(can_overflow=False)
    sink = h.sink()
    await sink.begin()
    await sink.finish("part one", last=False)
    await sink.finish("part two", last=True)
    assert h.channel.shown[-1] == ("part one" + CUT, True)
    assert h.releases == 1
    await h.close()
    timed = Harness(can_overflow=False, close_in=0.05)
    sink = timed.sink()
    await sink.begin()
    await sink.update("The first half")
    await asyncio.sleep(0.1)
    assert timed.channel.shown[-1] == ("The first half" + CUT, True)
    await timed.close()


async def test_websocket_overflow_sends_every_part() -> None:
    h = Harness(once=False)
    sink = h.sink()
    await sink.finish("one", last=False)
    await sink.finish("two", last=False)
    await sink.finish("three", last=True)
    assert h.channel.overflows == ["two", "three"]


async def test_the_window_closes_the_stream_and_the_rest_follows() -> None:
    h = Harness(close_in=0.05)
    sink = h.sink()
    await sink.begin()
    await sink.update("The first half")
    await asyncio.sleep(0.1)
    assert h.channel.shown[-1] == ("The first half" + TAKING_LONG, True)
    assert h.releases == 1
    await sink.update("The first half and more")  # stream closed: not shown
    await sink.finish("The first half and the rest.", last=True)
    assert h.channel.shown[-1][0].endswith(TAKING_LONG)
    assert h.channel.overflows == [" and the rest."]
    assert h.releases == 1
    await h.close()


async def test_the_window_closing_before_any_text_sends_everything_later() -> None:
    h = Harness(close_in=0.0)
    sink = h.sink()
    await sink.begin()
    await asyncio.sleep(0.02)
    assert h.channel.shown[-1] == (TAKING_LONG.lstrip(), True)
    await sink.fail("Sorry, it failed.")
    assert h.channel.overflows == ["Sorry, it failed."]
    await h.close()


async def test_a_channel_error_while_closing_at_the_window_is_survived() -> None:
    h = Harness(close_in=0.0)

    async def broken(content: str, *, finish: bool) -> None:
        raise PlatformError("wecom_bot", "down")

    sink = h.sink()
    h.channel.show = broken  # type: ignore[method-assign]
    sink_task = asyncio.ensure_future(sink._close_when_due())
    await sink_task  # logs, does not raise
    assert h.releases == 0


async def test_fail_finishes_the_stream_with_the_error() -> None:
    h = Harness()
    sink = h.sink()
    await sink.begin()
    await sink.update("partial")
    await sink.fail("partial\n\nSorry, something went wrong.")
    assert h.channel.shown[-1] == ("partial\n\nSorry, something went wrong.", True)
    assert h.releases == 1
    await h.close()


async def test_snapshot_resumes_after_the_stream_closed() -> None:
    h = Harness()
    first = h.sink()
    await first.finish("part one", last=False)
    snapshot = first.snapshot()
    assert snapshot["index"] == 1 and snapshot["closed"] and snapshot["released"]
    second = h.sink(resume=snapshot)
    await second.begin()  # no thinking state over a closed stream
    await second.finish("part two", last=True)
    assert h.channel.shown == [("part one" + CONTINUED, True)]
    assert h.channel.overflows == ["part two"] and h.releases == 1
    await h.close()


async def test_a_failing_release_does_not_fail_the_answer() -> None:
    h = Harness()
    sink = h.sink()

    async def release() -> None:
        raise RuntimeError("store down")

    sink._release = release
    await sink.finish("done", last=True)
    assert h.channel.shown == [("done", True)]


async def test_the_notes_speak_the_bots_language() -> None:
    zh = CATALOGUE["zh-CN"]
    h = Harness(limit=600, words=zh)
    sink = h.sink()
    await sink.begin()
    await sink.finish("第一部分", last=False)
    for _ in range(3):
        await sink.finish("很长的回答。" * 30, last=False)
    await sink.finish("完", last=True)
    assert h.channel.shown == [(zh.thinking, False), ("第一部分\n\n" + zh.continued, True)]
    (sent,) = h.channel.overflows
    assert sent.endswith("\n\n" + zh.cut) and measure(sent, "bytes") <= 600


def test_every_locales_notes_fit_the_room_kept_for_them() -> None:
    for words in CATALOGUE.values():
        for note in (words.continued, words.taking_long, words.cut):
            assert measure("\n\n" + note, "bytes") < NOTE_MARGIN, (words.locale, note)


# --- the status and the app's images -------------------------------------------------------


async def test_the_status_shows_in_place_of_thinking_and_under_text() -> None:
    h = Harness()
    sink = h.sink()
    await sink.begin()
    await sink.update("", "Using web_search…")
    await sink.update("Partial", "Using calculator…")
    await sink.finish("Partial answer.", last=True)
    assert h.channel.shown == [
        (ENGLISH.thinking, False),
        ("Using web_search…", False),
        ("Partial\n\n*Using calculator…*", False),
        ("Partial answer.", True),
    ]


async def test_images_ride_on_the_final_reply_and_other_files_come_back() -> None:
    import base64
    import hashlib

    h = Harness()
    sink = h.sink()
    await sink.begin()
    png = OutputFile(b"\x89PNG\r\n\x1a\nimage", "chart.png", "image/png")
    pdf = OutputFile(b"%PDF-1.7", "report.pdf", "application/pdf")
    gif = OutputFile(b"GIF89a....", "anim.gif", "image/gif")
    assert await sink.send_files([png, pdf, gif]) == [pdf, gif]
    await sink.finish("Here.", last=True)
    (item,) = h.channel.items
    assert item["msgtype"] == "image"
    assert base64.b64decode(item["image"]["base64"]) == png.data
    assert item["image"]["md5"] == hashlib.md5(png.data).hexdigest()


async def test_after_the_stream_closed_images_come_back_to_be_named() -> None:
    h = Harness()
    sink = h.sink()
    await sink.begin()
    await sink.finish("First part", last=False)
    png = OutputFile(b"\x89PNG\r\n\x1a\nimage", "chart.png", "image/png")
    assert await sink.send_files([png]) == [png]


async def test_where_the_channel_takes_files_they_are_uploaded_and_sent_after_the_answer() -> None:
    h = Harness(once=False, files=True)
    sink = h.sink()
    await sink.begin()
    png = OutputFile(b"\x89PNG\r\n\x1a\nimage", "chart.png", "image/png")
    pdf = OutputFile(b"%PDF-1.7", "report.pdf", "application/pdf")
    gif = OutputFile(b"GIF89a....", "anim.gif", "image/gif")  # not a stream image: a file
    tiny = OutputFile(b"abc", "tiny.txt", "text/plain")  # too small for WeCom
    bad = OutputFile(b"%PDF-1.7 bad", "bad.pdf", "application/pdf")
    h.channel.refuse.add("bad.pdf")
    assert await sink.send_files([png, pdf, gif, tiny, bad]) == [tiny, bad]
    assert h.channel.uploaded == ["report.pdf", "anim.gif"]
    assert h.channel.sent == []  # not before the text
    await sink.finish("Here.", last=True)
    assert h.channel.sent == ["media:report.pdf", "media:anim.gif"]
    assert len(h.channel.items) == 1
    await h.close()


async def test_a_file_that_cannot_be_sent_after_the_answer_is_only_logged() -> None:
    h = Harness(once=False, files=True)
    sink = h.sink()
    await sink.begin()
    pdf = OutputFile(b"%PDF-1.7", "report.pdf", "application/pdf")
    assert await sink.send_files([pdf]) == []
    h.channel.send_fails = True
    await sink.finish("Here.", last=True)  # the text is out: no error for the core
    assert h.channel.shown[-1] == ("Here.", True) and h.releases == 1
    await h.close()
