"""Build the store a `store:` URL names. Kept apart from the Protocols in `base.py`, so the
contracts import no backend."""

from __future__ import annotations

from gateway.store.base import Store


def open_store(url: str, *, max_connections: int = 64, shards: int = 16) -> Store:
    """Build the backend a `store:` URL names (validated by the config schema).
    `max_connections` bounds a Redis store's connections (on a cluster: its commands at once,
    so each node's connections); `shards` is how many stream shards its inbox has."""
    if url.startswith("memory://"):
        from gateway.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")):
        from gateway.store.redis import RedisStore

        return RedisStore(url, max_connections=max_connections, shards=shards)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]}")
