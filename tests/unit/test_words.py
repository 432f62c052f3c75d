"""The catalogue: every locale says every text, templates get every field filled, and Dify's
errors map to texts in one place."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Callable
from typing import get_args

import pytest

from gateway.config import parse_config
from gateway.dify_events import (
    ConversationGone,
    DeadlineExceeded,
    DifyError,
    DifyHTTPError,
    DifyRateLimited,
    DifyStreamError,
    DifyUnavailable,
    StreamStalled,
)
from gateway.registry import Locale
from gateway.runtime import Gateway
from gateway.store.memory import MemoryStore
from gateway.words import (
    CATALOGUE,
    CHAT_PAGES,
    ENGLISH,
    KINDS,
    SIMPLIFIED_CHINESE,
    ChatPageWords,
    Words,
    dify_failure,
    words_for,
)

TEXTS = [f.name for f in dataclasses.fields(Words) if f.name not in ("locale", "kinds")]
# Each template, the fields it must use, and how its method fills it (with a marker value).
TEMPLATES: dict[str, tuple[set[str], Callable[[Words], str]]] = {
    "files_without_text_template": ({"names"}, lambda w: w.files_without_text("MARK.pdf")),
    "dify_rejected_template": ({"code"}, lambda w: w.dify_rejected("MARK")),
    "dify_error_template": ({"code"}, lambda w: w.dify_error("MARK")),
    "card_chosen_template": ({"choice"}, lambda w: w.card_chosen("MARK")),
    "kind_not_supported_template": ({"kind"}, lambda w: w.kind_not_supported("MARK")),
    "too_many_questions_template": ({"limit"}, lambda w: w.too_many_questions(7)),
    "too_many_messages_template": ({"limit"}, lambda w: w.too_many_messages(7)),
    "status_tools_template": ({"tools"}, lambda w: w.status_tools("MARK")),
    "status_step_template": ({"step"}, lambda w: w.status_step("MARK")),
    "form_reply_with_text_template": ({"label"}, lambda w: w.form_reply_with_text("MARK")),
    "form_chosen_template": ({"action"}, lambda w: w.form_chosen("MARK")),
    "tools_used_template": ({"tools"}, lambda w: w.tools_used("MARK")),
    "usage_template": ({"tokens", "seconds"}, lambda w: w.usage(7, 1.25)),
    "usage_tokens_template": ({"tokens"}, lambda w: w.usage(7, None)),
    "file_missing_template": ({"name"}, lambda w: w.file_missing("MARK.png")),
    "files_answer_template": ({"names"}, lambda w: w.files_answer("MARK.png")),
    "attachment_refused_template": ({"name"}, lambda w: w.attachment_refused("MARK.zip")),
    "attachment_too_large_template": (
        {"name", "limit"},
        lambda w: w.attachment_too_large("MARK.zip", 7),
    ),
    "attachment_too_many_template": (
        {"name", "limit"},
        lambda w: w.attachment_too_many("MARK.zip", 7),
    ),
}
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_every_locale_has_a_catalogue() -> None:
    assert set(CATALOGUE) == set(get_args(Locale))
    for locale, words in CATALOGUE.items():
        assert words.locale == locale and words_for(locale) is words


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
def test_every_text_is_said(words: Words) -> None:
    for name in TEXTS:
        text = getattr(words, name)
        assert isinstance(text, str) and text.strip(), name
        assert text == text.strip(), f"{name}: spacing around a text belongs to its user"
    assert set(words.kinds) == set(KINDS)
    assert all(name.strip() for name in words.kinds.values())


def test_the_chinese_texts_are_translated() -> None:
    for name in TEXTS:
        english, chinese = getattr(ENGLISH, name), getattr(SIMPLIFIED_CHINESE, name)
        assert chinese != english, name
        assert _CJK.search(chinese), f"{name}: {chinese!r}"
        assert "Sorry" not in chinese
    for kind in KINDS:
        assert _CJK.search(SIMPLIFIED_CHINESE.kinds[kind]), kind


def test_templates_are_exactly_the_fields_named_so() -> None:
    assert set(TEMPLATES) == {name for name in TEXTS if name.endswith("_template")}


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
def test_every_format_field_is_filled(words: Words) -> None:
    for name in TEXTS:
        expected = TEMPLATES[name][0] if name in TEMPLATES else set()
        assert _fields(getattr(words, name)) == expected, name
    for name, (_, fill) in TEMPLATES.items():
        text = fill(words)
        assert "{" not in text and "}" not in text, name
        assert "MARK" in text or "7" in text, name


def test_a_message_kind_is_said_in_words_or_as_the_platform_names_it() -> None:
    for words in CATALOGUE.values():
        for kind in KINDS:
            assert words.kinds[kind] in words.kind_not_supported(kind)
        assert "hologram" in words.kind_not_supported("hologram")
        assert words.these_kinds in words.kind_not_supported("")
    assert ENGLISH.kind_not_supported("sticker").startswith("Sorry, I can't read sticker messages")
    assert SIMPLIFIED_CHINESE.kind_not_supported("sticker") == (
        SIMPLIFIED_CHINESE.kind_not_supported_template.format(kind="表情")
    )


ERRORS: list[tuple[DifyError, str]] = [
    (DifyHTTPError(401, "unauthorized", "Access token is invalid"), "dify_misconfigured"),
    (DifyHTTPError(403, "forbidden", "no"), "dify_misconfigured"),
    (DifyHTTPError(404, "not_found", "no such app"), "dify_unavailable"),
    (DifyRateLimited(30.0), "dify_busy"),
    (StreamStalled("no data for 60s"), "dify_stalled"),
    (DeadlineExceeded("past 300s"), "too_slow"),
    (DifyUnavailable("cannot reach Dify"), "dify_unavailable"),
    (ConversationGone("gone"), "dify_unavailable"),
    (DifyError("something new"), "dify_unavailable"),
]


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
@pytest.mark.parametrize(("error", "entry"), ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
def test_dify_errors_map_to_texts(words: Words, error: DifyError, entry: str) -> None:
    assert dify_failure(words, error) == getattr(words, entry)


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
def test_dify_errors_with_a_code_show_the_code_and_never_the_detail(words: Words) -> None:
    rejected = dify_failure(words, DifyHTTPError(400, "bad_request", "secret detail"))
    assert rejected == words.dify_rejected("bad_request") and "secret" not in rejected
    failed = dify_failure(words, DifyStreamError("model_quota_exceeded", "secret detail"))
    assert failed == words.dify_error("model_quota_exceeded") and "secret" not in failed
    assert dify_failure(words, DifyStreamError("", "x")) == words.dify_error("error")


CODES: list[tuple[str, int, str]] = [
    ("rate_limit_error", 429, "quota_exhausted"),
    ("provider_quota_exceeded", 400, "quota_exhausted"),
    ("too_many_requests", 429, "dify_busy"),
    ("app_unavailable", 400, "app_unavailable"),
    ("not_chat_app", 400, "app_unavailable"),
    ("not_workflow_app", 400, "app_unavailable"),
    ("agent_not_published", 400, "app_unavailable"),
    ("workflow_version_execution_not_allowed", 403, "app_unavailable"),
    ("provider_not_initialize", 400, "model_unavailable"),
    ("model_currently_not_support", 400, "model_unavailable"),
    ("completion_request_error", 400, "model_failed"),
    ("invalid_param", 400, "invalid_inputs"),
    ("conversation_completed", 400, "conversation_completed"),
    ("file_too_large", 413, "file_rejected"),
    ("unsupported_file_type", 415, "file_rejected"),
    ("too_many_files", 400, "file_rejected"),
    ("no_file_uploaded", 400, "file_rejected"),
    ("filename_not_exists_error", 400, "file_rejected"),
    ("file_not_found", 404, "file_rejected"),
    ("file_access_denied", 403, "file_rejected"),
    ("audio_too_large", 413, "file_rejected"),
    ("unsupported_audio_type", 415, "file_rejected"),
    ("no_audio_uploaded", 400, "file_rejected"),
    ("provider_not_support_speech_to_text", 400, "voice_not_supported"),
]


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
@pytest.mark.parametrize(("code", "status", "entry"), CODES, ids=[c for c, _, _ in CODES])
def test_every_dify_error_code_has_a_short_text(
    words: Words, code: str, status: int, entry: str
) -> None:
    shown = dify_failure(words, DifyHTTPError(status, code, "secret detail", "secret_input"))
    assert shown == getattr(words, entry)
    assert "secret" not in shown and code not in shown


@pytest.mark.parametrize("words", CATALOGUE.values(), ids=list(CATALOGUE))
def test_stream_errors_and_failed_runs_have_short_texts(words: Words) -> None:
    assert dify_failure(words, DifyStreamError("workflow_failed", "node x")) == words.run_failed
    assert dify_failure(words, DifyStreamError("workflow_paused", "form")) == words.run_paused
    assert dify_failure(words, DifyStreamError("provider_quota_exceeded", "q")) == (
        words.quota_exhausted
    )
    assert dify_failure(words, DifyStreamError("invalid_param", "x")) == words.invalid_inputs


def test_the_refused_input_is_named_in_the_log_only() -> None:
    error = DifyHTTPError(400, "invalid_param", "department is required", "department")
    assert "department" in str(error)
    assert "department" not in dify_failure(ENGLISH, error)


async def test_the_runtime_gives_each_bot_the_words_of_its_locale() -> None:
    tree = {
        "dify": {"apps": {"main": {"api_key": "k"}}},
        "store": "memory://",
        "bots": {
            "sl": {"platform": "slack", "app": "main", "signing_secret": "s", "bot_token": "x"},
            "fs": {
                "platform": "feishu",
                "app": "main",
                "app_id": "a",
                "app_secret": "s",
                "verification_token": "v",
            },
            "fs-en": {
                "platform": "feishu",
                "app": "main",
                "app_id": "b",
                "app_secret": "s",
                "verification_token": "v",
                "locale": "en",
            },
        },
    }
    gateway = Gateway(parse_config(tree, env={}), store=MemoryStore())
    try:
        assert gateway.words == {"sl": ENGLISH, "fs": SIMPLIFIED_CHINESE, "fs-en": ENGLISH}
    finally:
        await gateway.aclose()


def test_the_chat_page_speaks_every_locale_and_every_text_is_translated() -> None:
    assert set(CHAT_PAGES) == set(get_args(Locale))
    names = [f.name for f in dataclasses.fields(ChatPageWords)]
    for name in names:
        english, chinese = getattr(CHAT_PAGES["en"], name), getattr(CHAT_PAGES["zh-CN"], name)
        for text in (english, chinese):
            assert text.strip() and text == text.strip() and "{" not in text, name
        assert chinese != english and _CJK.search(chinese), name
