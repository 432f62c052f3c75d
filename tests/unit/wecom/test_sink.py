"""The WeCom app reply sink and the per-member send quota it waits on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.wecom.api import WecomAPI
from adapters.wecom.quota import WINDOWS, MemberQuota, Window
from adapters.wecom.sink import PACING, WecomAppSink, to_wecom_markdown
from gateway.platform import PlatformError, RateLimited
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeQyapi


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
async def qyapi() -> AsyncIterator[FakeQyapi]:
    fake = FakeQyapi()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def api(qyapi: FakeQyapi) -> AsyncIterator[WecomAPI]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield WecomAPI(
            http,
            MemoryStore(),
            api_base=qyapi.base_url,
            corp_id=CORP_ID,
            secret=SECRET,
            agent_id=AGENT_ID,
        )


def _sink(api: WecomAPI, resume: dict[str, object] | None = None) -> WecomAppSink:
    return WecomAppSink(api, MemberQuota(MemoryStore(), "q"), {"touser": "zhangsan"}, resume)


# --- markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**bold** and [a link](https://x.y)", "**bold** and [a link](https://x.y)"),
        ("see ![chart](https://x.y/c.png)", "see [chart](https://x.y/c.png)"),
        ("![](https://x.y/c.png)", "https://x.y/c.png"),
        ("# Title\n> quote\n`code`", "# Title\n> quote\n`code`"),
    ],
)
def test_to_wecom_markdown(text: str, expected: str) -> None:
    converted = to_wecom_markdown(text)
    assert converted == expected
    assert len(converted.encode()) <= len(text.encode())


# --- sink ----------------------------------------------------------------------------------


def test_pacing_keeps_one_answer_under_the_member_limit() -> None:
    assert 60 / PACING.min_interval <= 30


async def test_begin_sends_nothing(api: WecomAPI, qyapi: FakeQyapi) -> None:
    sink = _sink(api)
    await sink.begin()
    assert qyapi.calls == []


async def test_each_finish_is_one_markdown_message(api: WecomAPI, qyapi: FakeQyapi) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.finish("First paragraph.\n\n", last=False)
    await sink.finish("Second, with ![img](https://x.y/i.png)", last=True)
    assert qyapi.texts("zhangsan") == [
        "First paragraph.\n\n",
        "Second, with [img](https://x.y/i.png)",
    ]
    assert {s.msgtype for s in qyapi.sent} == {"markdown"}
    assert sink.snapshot() == {"touser": "zhangsan", "sent": [s.msgid for s in qyapi.sent]}


async def test_blank_parts_are_not_sent(api: WecomAPI, qyapi: FakeQyapi) -> None:
    await _sink(api).finish(" \n\n ", last=True)
    assert qyapi.of("message/send") == []


async def test_fail_sends_the_error_text(api: WecomAPI, qyapi: FakeQyapi) -> None:
    await _sink(api).fail("Partial answer\n\nSorry, something went wrong.")
    assert qyapi.texts() == ["Partial answer\n\nSorry, something went wrong."]


async def test_errors_reach_the_core(api: WecomAPI, qyapi: FakeQyapi) -> None:
    qyapi.fail_next("message/send", 45009)
    with pytest.raises(RateLimited):
        await _sink(api).finish("hi", last=True)
    qyapi.fail_next("message/send", 81013)
    with pytest.raises(PlatformError):
        await _sink(api).finish("hi", last=True)


async def test_resume_recalls_the_interrupted_parts(api: WecomAPI, qyapi: FakeQyapi) -> None:
    sink = _sink(api, resume={"touser": "zhangsan", "sent": ["msgid-old-1", "msgid-old-2"]})
    qyapi.fail_next("message/recall", 41001)  # one of them can no longer be recalled
    await sink.begin()
    assert qyapi.recalled == ["msgid-old-2"]
    assert len(qyapi.of("message/recall")) == 2
    await sink.finish("The whole answer again.", last=True)
    assert qyapi.texts() == ["The whole answer again."]


# --- quota ---------------------------------------------------------------------------------


def test_windows_keep_any_rolling_minute_and_hour_inside_the_limits() -> None:
    minute, ten_minutes = WINDOWS
    assert 2 * minute.cap <= 30  # a rolling minute touches at most 2 minute windows
    assert (3600 // ten_minutes.seconds + 1) * ten_minutes.cap <= 1000


async def test_quota_waits_for_the_next_window() -> None:
    clock = FakeClock(1_700_000_080.0)  # 20 s before a minute window ends
    quota = MemberQuota(MemoryStore(), "q", clock=clock, sleep=clock.sleep)
    for _ in range(15):
        assert await quota.acquire("zhangsan") == 0
    waited = await quota.acquire("zhangsan")
    assert 20.0 <= waited < 20.1 and clock.slept == [waited]
    assert await quota.acquire("lisi") == 0  # members are counted apart


async def test_quota_gives_back_slots_it_could_not_use() -> None:
    clock = FakeClock(0.0)
    store = MemoryStore()
    quota = MemberQuota(
        store, "q", windows=(Window(60, 100), Window(600, 2)), clock=clock, sleep=clock.sleep
    )
    await quota.acquire("zhangsan")
    await quota.acquire("zhangsan")
    await quota.acquire("zhangsan")  # waits for the 10-minute window
    assert clock.slept and 599 < clock.slept[0] < 601
    # The refused attempt did not count against the minute window.
    assert await store.get("q:zhangsan:60:0") in (None, "2")


async def test_quota_without_a_store_does_not_block() -> None:
    class DownStore(MemoryStore):
        async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
            raise StoreUnavailable("redis is down")

    clock = FakeClock()
    quota = MemberQuota(DownStore(), "q", clock=clock, sleep=clock.sleep)
    assert await quota.acquire("zhangsan") == 0 and clock.slept == []
