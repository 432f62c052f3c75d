"""A gateway served as `dify-gateway serve` serves it, that also answers questions about its
own memory on stdin, one JSON line per command on stdout (for `bench_memory.py`).

    python -m bench.memory_probe --config gw.yaml

Commands: `stats` (RSS, glibc's heap, pymalloc's arenas, live Python objects, the sizes of
the gateway's own tables), `types` (the 30 commonest types among the objects the collector
tracks), `garbage` (the commonest types of what a full collection would free now), `gc` (a
full collection, then stats), `trim` (glibc's `malloc_trim(0)`, then stats), `quit`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.app import outbound_files, raise_file_limit, serving
from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.store.claims import ClaimIndex


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes of the main heap (sbrk) and the other arenas
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmap'd blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free, kept by malloc
            "keepcost",  # free bytes at the top of the heap, trimmable by sbrk
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = MallInfo2


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pymalloc() -> dict[str, int]:
    """From sys._debugmallocstats(), which writes to the C stderr."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    wanted = {
        "arenas_current": r"# arenas allocated current\s*=\s*([\d,]+)",
        "arenas_highwater": r"# arenas highwater mark\s*=\s*([\d,]+)",
        "allocated_blocks_bytes": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
        "free_blocks_bytes": r"# bytes in available blocks\s*=\s*([\d,]+)",
        "free_pools_bytes": r"# bytes in \d+ unused pools\s*=\s*([\d,]+)",
        "arena_bytes": r"Total\s*=\s*([\d,]+)",
    }
    found: dict[str, int] = {}
    for key, pattern in wanted.items():
        match = re.search(pattern, text)
        if match:
            found[key] = int(match.group(1).replace(",", ""))
    return found


def _tables(gateway: Gateway) -> dict[str, int]:
    """The gateway's per-message tables, by how many entries they hold now."""
    sizes: dict[str, int] = {}
    store: Any = gateway.store
    claims = getattr(store, "_claims", None)
    if claims is not None:
        sizes["claim_index_keys"] = len(claims)
    kept = getattr(store, "_kept", None)  # the memory store's dict, SQLite's count
    if kept is not None:
        sizes["store_kept"] = kept if isinstance(kept, int) else len(kept)
    live = getattr(getattr(store, "_queue", None), "_live", None)
    if live is not None:
        sizes["queue_live"] = len(live)
    scheduler: Any = gateway.inbox.scheduler
    for name in ("_ready", "_waiting", "_running"):
        table = getattr(scheduler, name, None)
        if table is not None:
            sizes[f"scheduler{name}"] = len(table)
    return sizes


def _garbage() -> list[tuple[str, int]]:
    """What a full collection would free: the commonest types of cyclic garbage."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        counts = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return counts.most_common(30)


def stats(gateway: Gateway) -> dict[str, Any]:
    info = _LIBC.mallinfo2()
    return {
        "rss_kib": _status("VmRSS"),
        "rss_anon_kib": _status("RssAnon"),
        "malloc_heap_kib": info.arena // 1024,
        "malloc_mmap_kib": info.hblkhd // 1024,
        "malloc_in_use_kib": info.uordblks // 1024,
        "malloc_free_kib": info.fordblks // 1024,
        "malloc_top_free_kib": info.keepcost // 1024,
        **{f"pymalloc_{k}": v for k, v in _pymalloc().items()},
        "python_objects": len(gc.get_objects()),
        "threads": _status("Threads"),
        **_tables(gateway),
    }


async def commands(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "quit":
            return
        if line == "garbage":
            print(json.dumps({"command": line, "garbage": _garbage()}), flush=True)
            continue
        if line == "types":
            counts = Counter(type(o).__qualname__ for o in gc.get_objects())
            print(json.dumps({"command": line, "types": counts.most_common(30)}), flush=True)
            continue
        if line == "gc":
            gc.collect()
        elif line == "trim":
            _LIBC.malloc_trim(0)
        print(json.dumps({"command": line, **stats(gateway)}), flush=True)


def shorten_claims(ttl: float) -> None:
    """Dedupe claims held `ttl` seconds instead of 8 hours: to watch memory once the first
    claims expire, within a benchmark's minutes."""
    claim = ClaimIndex.claim

    def short_claim(self: ClaimIndex, keys: Sequence[str], now: float, _: float) -> bool:
        return claim(self, keys, now, ttl)

    ClaimIndex.claim = short_claim  # type: ignore[method-assign]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--claim-ttl", type=float, default=0.0)
    args = parser.parse_args()
    if args.claim_ttl:
        shorten_claims(args.claim_ttl)
    config = load_config(args.config)
    raise_file_limit(config.server.max_connections + outbound_files(config.server))
    gateway = Gateway(config)
    async with serving(gateway, config.server.host, config.server.port, manage_gc=True):
        await commands(gateway)


if __name__ == "__main__":
    asyncio.run(main())
