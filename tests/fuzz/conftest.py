"""The fuzz suite's shared settings: every test under tests/fuzz/ is marked `fuzz` and runs
with the hypothesis profile `"fuzz"` (`FUZZ = settings.get_profile("fuzz")`, then `@FUZZ`).

Budgets, in examples per target (per `@given` test):

- every run (CI, a plain `pytest`): `SMALL`, a few hundred, seconds for the whole suite;
- `pytest -m fuzz`: `BIG` (100,000), for a run outside CI;
- `FUZZ_EXAMPLES=<n>` overrides both.

No deadline (a 1 MB body takes what it takes) and no example database writes beyond
hypothesis's default: a failure prints its reproduction blob.

Each target's figures (inputs tried, seconds) are printed at the end of a run that selects
`-m fuzz`, for the record in bench/README.md. Most targets run `@given` inside the test
(to share an event loop and an adapter), where hypothesis's own `--hypothesis-show-statistics`
sees nothing, so they are collected here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.statistics import collector

SMALL = 200
BIG = 100_000
_HERE = Path(__file__).parent


def examples(config: pytest.Config) -> int:
    """Examples per target for this run."""
    if os.environ.get("FUZZ_EXAMPLES"):
        return int(os.environ["FUZZ_EXAMPLES"])
    selected = str(config.getoption("markexpr", default="") or "").replace(" ", "")
    return BIG if selected == "fuzz" else SMALL


def pytest_configure(config: pytest.Config) -> None:
    settings.register_profile(
        "fuzz",
        max_examples=examples(config),
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.fuzz)
            # A failing example may be a 1 MB body: hypothesis warns before printing it,
            # and that warning (an error here) would hide the failure itself.
            item.add_marker(pytest.mark.filterwarnings("ignore:Generating overly large repr"))


# Inside hypothesis's own wrapper (trylast), which sets the collector for a top-level
# `@given`: `note` passes the statistics on to it.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Counts the inputs every `@given` in a fuzz test ran: the test cases, in every phase,
    that reached the test (not those whose generation overran its buffer). The count rides
    in the test's report (`user_properties`), so it reaches the summary from xdist workers."""
    if _HERE not in Path(str(item.path)).parents:
        return (yield)
    inputs = 0
    passed_on = collector.value

    def note(stats: Any) -> None:
        nonlocal inputs
        for name, phase in stats.items():
            if name.endswith("-phase") and isinstance(phase, dict):
                cases = phase.get("test-cases", ())
                inputs += sum(case["status"] in ("valid", "interesting") for case in cases)
        if passed_on is not None:
            passed_on(stats)

    started = time.monotonic()
    try:
        with collector.with_value(note):
            return (yield)
    finally:
        item.user_properties.append(("fuzz_inputs", inputs))
        item.user_properties.append(("fuzz_seconds", time.monotonic() - started))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if examples(config) <= SMALL:
        return
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            figures = dict(getattr(report, "user_properties", ()))
            if getattr(report, "when", "") == "call" and "fuzz_inputs" in figures:
                inputs, seconds = figures["fuzz_inputs"], figures["fuzz_seconds"]
                lines.append(f"{inputs:>9,} {seconds:>8.1f} s  {outcome}  {report.nodeid}")
    if lines:
        terminalreporter.section("fuzz figures (inputs, seconds)")
        for line in sorted(lines, key=lambda line: line.rsplit(" ", 1)[-1]):
            terminalreporter.write_line(line)
