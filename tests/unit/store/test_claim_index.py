"""The in-memory claim index behind the memory and SQLite stores."""

from __future__ import annotations

from gateway.store.claims import SWEEP_EVERY_S, ClaimIndex


def test_claims_are_all_or_nothing_and_end() -> None:
    index = ClaimIndex()
    assert index.claim(["a", "b"], 100.0, 10.0)
    assert not index.claim(["b", "c"], 105.0, 10.0)
    assert index.claim(["c"], 105.0, 10.0)  # the refused claim took nothing
    assert not index.claim(["a"], 109.9, 10.0)
    assert index.claim(["a"], 110.0, 10.0)  # ended at exactly 110


def test_sweeps_forget_ended_claims_a_little_at_a_time() -> None:
    index = ClaimIndex()
    for i in range(100):
        index.claim([f"k{i}"], 1000.0 + i, 1000.0)
    assert len(index) == 100
    # Later: the first 50 claims have ended; a sweep drops exactly those.
    index.claim(["other"], 2049.5, 1000.0)
    assert len(index) == 51


def test_a_key_claimed_again_outlives_its_first_claim() -> None:
    index = ClaimIndex()
    assert index.claim(["k"], 0.0, 10.0)
    assert index.claim(["k"], 20.0, 100.0)  # the first claim ended; claimed again, longer
    index.claim(["x"], 50.0, 10.0)  # sweeps the first claim's queue entry
    assert not index.claim(["k"], 60.0 + SWEEP_EVERY_S, 10.0)


def test_released_claims_can_be_claimed_again() -> None:
    index = ClaimIndex()
    assert index.claim(["a", "b"], 0.0, 10.0)
    index.release(["a", "b"], 10.0)
    assert index.claim(["a", "b"], 1.0, 10.0)
    index.release(["a"], 10.0)  # not its end any more: left alone
    assert not index.claim(["a"], 2.0, 10.0)


def test_claims_loaded_from_a_log_hold_until_their_end() -> None:
    index = ClaimIndex()
    index.add(["x"], 50.0, None)
    index.add(["y"], 80.0, None)
    assert not index.claim(["x"], 10.0, 5.0)
    assert index.claim(["x"], 60.0, 5.0)
    assert not index.claim(["y"], 61.0, 5.0)
    assert len(index) == 2  # y, and x claimed again
