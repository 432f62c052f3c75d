"""Full garbage collections, moved out of the way of acks.

Measured (bench/README.md): with 2,000 answers in flight the heap holds ~350,000 tracked
objects and one full (generation-2) collection takes ~200 ms. CPython starts those by
allocation counts, so they land in the middle of webhook bursts, and every ack waits behind
them: p99 went from 6 ms to 900 ms. So `serve()`:

- freezes what exists after startup (modules, config, adapters: never scanned again);
- runs young-generation collections every YOUNG_THRESHOLD allocations rather than every
  700 (CPython's default): a burst of acks ran a young collection every ~50 requests and
  a middle-generation one every ~600, each walking everything the requests in flight and
  the held answers still referenced (about 3% of an ack's CPU; bench/README.md §1);
- stops automatic full collections, and runs them from a task instead: when acks have been
  quiet for a moment, no more than 1% of the time (a collection that took 200 ms waits 20 s
  for the next), and at least every five minutes.

After each full collection, glibc's `malloc_trim` hands the free pages it kept back to the
system: after bursts of answers it held 15 MiB free (bench/README.md, "Memory after a
burst"); the trim takes a few ms, up to ~100 ms on a heap fragmented over 100 MB, and counts
towards the collection's duration for the spacing.

Cyclic garbage that dies young (most of it: tracebacks, finished tasks) is still reclaimed by
the young collections; only what survived to the oldest generation waits for a full one.
A first version collected every 5 s whenever acks were quiet, which is also whenever answers
are streaming: it froze 500 streams for ~200 ms at a time.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

QUIET_S = 0.25  # no message accepted for this long: a full collection will not hurt
MIN_INTERVAL_S = 30.0
MAX_INTERVAL_S = 300.0
DUTY = 100  # wait at least this many times the last collection's duration
YOUNG_THRESHOLD = 20_000  # container allocations (net) between young collections
_NEVER = 10**9  # a generation-2 threshold that automatic collection never reaches


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, where the C library has one (not musl, not macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """A full collection, then free pages back to the system."""
    gc.collect()
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def configure() -> None:
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, _NEVER)


async def collect_when_quiet(
    last_accept: Callable[[], float], *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Run forever: full collections when acks are quiet, spaced as the module says."""
    last_full = clock()
    spacing = MIN_INTERVAL_S
    while True:
        await asyncio.sleep(QUIET_S)
        now = clock()
        since = now - last_full
        quiet = now - last_accept() >= QUIET_S
        if (quiet and since >= spacing) or since >= MAX_INTERVAL_S:
            started = time.perf_counter()
            release_memory()
            took = time.perf_counter() - started
            last_full = clock()
            spacing = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, DUTY * took))
            log.debug("full collection and trim took %.0f ms", took * 1000)
