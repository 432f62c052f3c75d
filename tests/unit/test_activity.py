"""gateway/activity.py: the last 50 messages per bot, and an hour of per-minute counts and
p95s, bounded whatever the traffic; message text kept only when asked to."""

from __future__ import annotations

from gateway.activity import BOUNDS, RECENT, Activity, percentile
from gateway.status_page import authorized


def test_recent_messages_are_the_last_fifty_newest_first() -> None:
    now = [6000.0]
    activity = Activity(clock=lambda: now[0])
    for i in range(RECENT + 10):
        now[0] += 1
        activity.record(
            bot="b",
            chat_type="direct",
            outcome="ok",
            accepted_at=now[0] - i / 100,
            first_update_at=None,
            text="secret",
        )
    recent = activity.recent("b")
    assert len(recent) == RECENT
    assert [r.at for r in recent] == sorted((r.at for r in recent), reverse=True)
    assert abs(recent[0].total_s - (RECENT + 9) / 100) < 1e-6
    assert recent[0].first_update_s is None and recent[0].text is None  # text not kept
    assert activity.recent("other") == []


def test_text_is_kept_only_when_asked() -> None:
    activity = Activity(keep_text=True, clock=lambda: 100.0)
    activity.record(
        bot="b",
        chat_type="group",
        outcome="ok",
        accepted_at=99.0,
        first_update_at=99.5,
        text="hello",
    )
    (record,) = activity.recent("b")
    assert record.text == "hello" and record.first_update_s == 0.5 and record.total_s == 1.0


def test_an_hour_of_minutes_with_answers_errors_and_p95() -> None:
    now = [60.0 * 1000]
    activity = Activity(clock=lambda: now[0])
    for seconds in [0.1] * 19 + [30.0]:
        activity.record(
            bot="b",
            chat_type="direct",
            outcome="ok",
            accepted_at=now[0] - seconds,
            first_update_at=None,
        )
    activity.record(
        bot="b",
        chat_type="direct",
        outcome="dify_error",
        accepted_at=now[0] - 1,
        first_update_at=None,
    )
    activity.record(
        bot="b",
        chat_type="direct",
        outcome="rate_limited",
        accepted_at=now[0],
        first_update_at=None,
    )
    hour = activity.hour()
    assert len(hour) == 60 and hour[-1].answers == 22 and hour[-1].errors == 1
    assert sum(p.answers for p in hour[:-1]) == 0
    p95 = hour[-1].p95_s
    assert p95 is not None and 1.0 <= p95 <= 1.25 * 1.0 + 0.01
    now[0] += 30 * 60
    assert activity.hour()[29].answers == 22 and activity.hour_p95() == p95
    now[0] += 31 * 60  # an hour later the minute is gone
    assert all(p.answers == 0 for p in activity.hour()) and activity.hour_p95() is None


def test_percentile_of_a_histogram() -> None:
    buckets = [0] * (len(BOUNDS) + 1)
    assert percentile(buckets, 0.95) is None
    buckets[-1] = 1  # slower than every bound
    assert percentile(buckets, 0.95) == BOUNDS[-1]


def test_the_token_is_a_bearer_header_or_the_token_parameter() -> None:
    token = "t" * 20
    assert authorized(token, {"authorization": f"Bearer {token}"}, {})
    assert authorized(token, {"authorization": f"bearer  {token}"}, {})
    assert authorized(token, {}, {"token": token})
    assert authorized(token, {"authorization": "Bearer wrong"}, {"token": token})
    assert not authorized(token, {"authorization": f"Basic {token}"}, {})
    assert not authorized(token, {}, {"token": token + "x"})
    assert not authorized(token, {}, {})
