"""The fuzz suite's shared settings: every test under tests/fuzz/ is marked `fuzz` and runs
with the hypothesis profile `"fuzz"` (`FUZZ = settings.get_profile("fuzz")`, then `@FUZZ`).

Budgets, in examples per target (per `@given` test):

- every run (CI, a plain `pytest`): `SMALL`, a few hundred, seconds for the whole suite;
- `pytest -m fuzz`: `BIG` (100,000), for a run outside CI;
- `FUZZ_EXAMPLES=<n>` overrides both.

No deadline (a 1 MB body takes what it takes) and no example database writes beyond
hypothesis's default: a failure prints its reproduction blob.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
