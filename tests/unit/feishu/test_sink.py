"""The reply sink against the fake Feishu: CardKit streaming, the PATCH fallback, resume."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.feishu import cards
from adapters.feishu.adapter import MAX_MESSAGE_BYTES
from adapters.feishu.api import FeishuAPI, dumps
from adapters.feishu.sink import CARDKIT_PACING, PATCH_PACING, CardKitSupport, FeishuReplySink
from gateway.platform import PlatformError, RateLimited
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.fakes.feishu import FakeFeishu

REPLY_TO = {"message_id": "om_user", "chat_id": "oc_chat", "in_thread": False}
THINKING = "_Thinking…_"


def _sink(api: FeishuAPI, support: CardKitSupport | None = None, **kw: Any) -> FeishuReplySink:
    kw.setdefault("words", ENGLISH)
    return FeishuReplySink(
        api, support or CardKitSupport(), kw.pop("reply_to", REPLY_TO), "fs:om_user", **kw
    )


def _card(fake: FakeFeishu, index: int = 0) -> Any:
    return list(fake.cards.values())[index]


async def test_streaming_card_lifecycle(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    assert sink.pacing == CARDKIT_PACING
    await sink.begin()
    card = _card(fake)
    assert card.streaming
    assert card.data["schema"] == "2.0"
    assert card.data["config"]["summary"] == {"content": "Thinking…"}
    (message_id,) = fake.order
    assert fake.visible(message_id) == THINKING
    reply = fake.calls_to("POST", "/reply")[0].body
    assert reply["msg_type"] == "interactive" and reply["reply_in_thread"] is False
    assert json.loads(reply["content"]) == {"type": "card", "data": {"card_id": card.card_id}}

    for text in ("Hello", "Hello, wor", "Hello, world"):
        await sink.update(text)
        assert fake.visible(message_id) == text
    await sink.update("Hello, world")  # unchanged: no call
    await sink.finish("Hello, world. Done.", last=True)

    assert fake.transcript() == ["Hello, world. Done."]
    assert not card.streaming  # the documented settings form took effect
    assert card.data["config"]["summary"] == {"content": "Hello, world. Done."}
    ops = [op for _, op, _ in card.history]
    assert ops == ["create", "content", "content", "content", "content", "settings"]
    sequences = [seq for _, _, seq in card.history[1:]]
    assert sequences == sorted(set(sequences))


async def test_the_placeholder_speaks_the_bots_language(api: FeishuAPI, fake: FakeFeishu) -> None:
    await _sink(api, words=SIMPLIFIED_CHINESE).begin()
    card = _card(fake)
    assert card.data["config"]["summary"] == {"content": SIMPLIFIED_CHINESE.thinking}
    assert fake.visible(fake.order[0]) == f"_{SIMPLIFIED_CHINESE.thinking}_"
    assert "Thinking" not in json.dumps(card.data, ensure_ascii=False)


async def test_the_fallback_card_shows_the_placeholder_too(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    fake.inject("POST", "cardkit/v1/cards$", code=99991672)
    await _sink(api, words=SIMPLIFIED_CHINESE).begin()
    (message_id,) = fake.order
    assert fake.visible(message_id) == f"_{SIMPLIFIED_CHINESE.thinking}_"


async def test_reply_goes_into_the_topic_thread(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api, reply_to={**REPLY_TO, "in_thread": True})
    await sink.begin()
    assert fake.calls_to("POST", "/reply")[0].body["reply_in_thread"] is True
    assert fake.messages[fake.order[0]].parent_id == "om_user"


async def test_finish_with_the_text_already_shown_only_closes(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("All of it")
    await sink.finish("All of it", last=True)
    assert [op for _, op, _ in _card(fake).history] == ["create", "content", "settings"]


async def test_rollover_starts_a_new_card(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("part one, growing")
    await sink.finish("part one", last=False)
    await sink.update("part two")
    await sink.finish("part two, done", last=True)
    assert fake.transcript() == ["part one", "part two, done"]
    assert len(fake.cards) == 2 and not any(c.streaming for c in fake.cards.values())
    uuids = [c.body["uuid"] for c in fake.calls_to("POST", "/reply")]
    assert len(set(uuids)) == 2
    assert sink.snapshot()["done"] == fake.order


async def test_finish_without_begin_sends_one_finished_card(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    await _sink(api).finish("Started a new conversation.", last=True)
    assert fake.transcript() == ["Started a new conversation."]
    assert not fake.cards and len(fake.calls) == 2  # token + reply


async def test_create_failure_falls_back_to_a_patched_card(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    support = CardKitSupport()
    sink = _sink(api, support)
    fake.inject("POST", "cardkit/v1/cards$", code=300301)
    await sink.begin()
    assert sink.pacing == PATCH_PACING
    assert support.enabled  # a one-off failure does not disable CardKit for the bot
    await sink.update("first words")
    await sink.finish("first words and the rest", last=True)
    assert fake.transcript() == ["first words and the rest"]
    (message,) = fake.messages.values()
    assert message.card is not None and message.card["config"]["update_multi"] is True
    assert len(message.patches) == 2


async def test_the_fallback_card_folds_reasoning_in_a_json_1_panel(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    sink = _sink(api, CardKitSupport(enabled=False))
    await sink.begin()
    await sink.update("the answer")
    sink.fold_reasoning("first this, then that")
    await sink.finish("the answer", last=True)  # same text: the panel alone is news
    (message,) = fake.messages.values()
    assert message.card is not None and len(message.patches) == 2
    panel, answer = message.card["elements"]
    assert panel == {
        k: v
        for k, v in cards.reasoning_panel("Reasoning", "first this, then that").items()
        if k != "element_id"
    }
    assert answer["content"] == "the answer"


async def test_a_finished_fallback_card_sent_at_once_folds_reasoning_too(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    sink = _sink(api, CardKitSupport(enabled=False))
    sink.fold_reasoning("why")
    await sink.finish("because", last=True)
    (message,) = fake.messages.values()
    assert message.card is not None and "schema" not in message.card
    assert [e["tag"] for e in message.card["elements"]] == ["collapsible_panel", "markdown"]


async def test_missing_cardkit_scope_disables_cardkit_for_the_bot(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    support = CardKitSupport()
    fake.inject("POST", "cardkit/v1/cards$", code=99991672)
    await _sink(api, support).begin()
    assert not support.enabled
    second = _sink(api, support)
    await second.begin()
    assert second.pacing == PATCH_PACING
    assert len(fake.calls_to("POST", "cardkit/v1/cards$")) == 1


async def test_first_put_failure_recalls_the_placeholder(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    await sink.begin()
    fake.inject("PUT", "/content$", code=300309)
    await sink.update("the answer")
    assert sink.pacing == PATCH_PACING
    await sink.update("the answer grows")
    await sink.finish("the answer is complete", last=True)
    placeholder, _fallback = fake.order
    assert fake.messages[placeholder].deleted
    assert fake.transcript() == ["the answer is complete"]
    assert THINKING not in "".join(fake.transcript())


async def test_later_put_failure_is_raised_for_the_core(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("one")
    fake.inject("PUT", "/content$", code=300310)
    with pytest.raises(PlatformError):
        await sink.update("one two")
    await sink.update("one two three")  # the next update carries on
    assert sink.pacing == CARDKIT_PACING


async def test_rate_limits_are_raised_not_fallen_back(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    fake.inject(
        "POST",
        "cardkit/v1/cards$",
        code=99991400,
        status=429,
        headers={"x-ogw-ratelimit-reset": "2"},
    )
    with pytest.raises(RateLimited):
        await sink.begin()
    await sink.begin()
    fake.inject("PUT", "/content$", code=230020)
    with pytest.raises(RateLimited):
        await sink.update("x")
    assert sink.pacing == CARDKIT_PACING


async def test_close_failure_replaces_the_card_whole(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("partial")
    fake.inject("PATCH", "/settings$", code=300312)
    await sink.finish("final", last=True)
    card = _card(fake)
    assert not card.streaming
    assert fake.transcript() == ["final"]
    # The settings call was refused (so not applied); the whole card was replaced instead.
    assert [op for _, op, _ in card.history] == ["create", "content", "content", "replace"]


async def test_streaming_closed_by_feishu_still_delivers_the_end(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("long answer")
    _card(fake).data["config"]["streaming_mode"] = False  # Feishu's 10-minute auto-close
    await sink.finish("long answer, finished", last=True)
    assert fake.transcript() == ["long answer, finished"]


async def test_fail_renders_the_error_as_a_note(api: FeishuAPI, fake: FakeFeishu) -> None:
    sink = _sink(api)
    await sink.begin()
    await sink.update("Half an answer")
    await sink.fail("Half an answer\n\nSorry, the assistant failed.")
    (shown,) = fake.transcript()
    assert shown.startswith("Half an answer\n\n---\n")
    assert "<font color='grey'>⚠️ Sorry, the assistant failed.</font>" in shown
    assert not _card(fake).streaming


async def test_a_card_whose_reply_failed_is_sent_by_the_next_call(
    api: FeishuAPI, fake: FakeFeishu
) -> None:
    sink = _sink(api)
    fake.inject("POST", "/reply$", code=230020)
    with pytest.raises(RateLimited):
        await sink.begin()
    await sink.update("now it shows")
    assert len(fake.cards) == 1
    assert fake.transcript() == ["now it shows"]


async def test_resume_takes_over_the_current_card(api: FeishuAPI, fake: FakeFeishu) -> None:
    first = _sink(api)
    await first.begin()
    await first.update("before the crash")
    snapshot = json.loads(json.dumps(first.snapshot()))
    await first.update("before the crash, more")  # not in the snapshot

    second = _sink(api, resume=snapshot)
    await second.begin()  # takes over: no new card
    await second.update("answered again")
    await second.finish("answered again, fully", last=True)
    assert len(fake.cards) == 1 and len(fake.order) == 1
    assert fake.transcript() == ["answered again, fully"]
    sequences = [seq for _, _, seq in _card(fake).history[1:]]
    assert sequences == sorted(set(sequences))


def test_failure_text_without_an_answer_is_just_the_note() -> None:
    assert cards.failure_text("Sorry.") == "<font color='grey'>⚠️ Sorry.</font>"


def test_summary_is_plain_and_short() -> None:
    assert cards.summary("**Bold** and `code` [link](https://x.y)\n\nmore") == (
        "Bold and code link more"
    )
    assert len(cards.summary("字" * 500)) == cards.SUMMARY_CHARS


@pytest.mark.parametrize(
    "unit",
    ['"', "\\", "\n", "字", "a", "\x01"],
    ids=["quote", "backslash", "newline", "chinese", "ascii", "control"],
)
def test_worst_case_card_requests_stay_under_30_kb(unit: str) -> None:
    """The message limit leaves every card request under Feishu's 30 KB, even when the text
    is nothing but the characters JSON escapes most expensively."""
    per_char = len(unit.encode())
    text = cards.clean(unit * (MAX_MESSAGE_BYTES // per_char))
    preview = cards.summary(text)
    requests = [
        # the fallback: a card JSON string inside the PATCH/reply JSON (escaped twice)
        {"content": dumps(cards.plain_card(cards.failure_text(text + "\n\nSorry.")))},
        {
            "msg_type": "interactive",
            "content": dumps(cards.plain_card(text)),
            "reply_in_thread": True,
            "uuid": "0" * 32,
        },
        # CardKit: creating a card with the text, the element PUT, the whole replacement
        {"type": "card_json", "data": dumps(cards.streaming_card(text, preview))},
        {"content": text, "sequence": 2**31 - 1},
        {
            "card": {"type": "card_json", "data": dumps(cards.final_card(text))},
            "sequence": 2**31 - 1,
        },
    ]
    for request in requests:
        assert len(dumps(request).encode()) < 30 * 1024
