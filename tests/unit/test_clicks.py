"""Button values read back totally; an answer's record says who may stop it."""

from __future__ import annotations

from gateway.answers import AnswerRecord
from gateway.controls import button_value, read_button_value
from gateway.models import Job
from tests.helpers import group_job


def test_button_values_read_back_and_ids_may_hold_bars() -> None:
    value = button_value("suggestion", "web:u|1:m-1", "2")
    assert read_button_value(value) == ("suggestion", "web:u|1:m-1", "2")


def test_anything_else_reads_as_no_click() -> None:
    for raw in (None, 7, "", "dgw1", "dgw1|stop|", "dgw1|forms|x|b:1", "dgw1|stop||"):
        assert read_button_value(raw) is None


def job(user: str, scope: str, key: str) -> Job:
    return group_job(user, scope=scope, key=key, dify_user="d")


def test_the_asker_may_stop_and_others_only_in_a_shared_scope() -> None:
    mine = AnswerRecord.of(job("U1", "chat_user", "main/chat_user:U1"), "t", "m")
    assert mine.may_stop(job("U1", "chat_user", "main/chat_user:U1"))
    assert not mine.may_stop(job("U2", "chat_user", "main/chat_user:U2"))
    shared = AnswerRecord.of(job("U1", "thread", "main/thread:C1:1"), "t", "m")
    assert shared.may_stop(job("U2", "thread", "main/thread:C1:1"))
    assert not shared.may_stop(job("U2", "thread", "main/thread:C1:2"))


def test_a_record_reads_back_and_garbage_reads_as_none() -> None:
    record = AnswerRecord.of(job("U1", "user", "k"), "t", "m")
    assert AnswerRecord.decode(record.encode()) == record
    for raw in ("", "[]", "{}", '{"job_id": 1}', "not json"):
        assert AnswerRecord.decode(raw) is None
