"""The storage contracts, one Protocol per thing the gateway needs from a store.

- `Claims`: dedupe. Claiming every id of a message at once makes a platform's retry (on any
  instance) a no-op.
- `Inbox`: the durable inbox. Accepting a message claims its ids *and* keeps its job, in one
  atomic step, before the ack; `feed()` hands this instance its share of the kept jobs
  (gateway/inbox/ works on them).
- `Conversations`: which Dify conversation a user, chat or thread is in; kept for good.
- `Locks`: one answer at a time per conversation (across instances, on Redis).
- `SharedState`: small string values with a TTL that instances share: access tokens, reply
  checkpoints, answer records, WeCom send quotas and AI-bot stream state.
- `Broadcast`: publish/subscribe between instances, for what must reach a connection that
  another instance holds (a web chat's socket): fire and forget, no history.
- `Store`: all of them plus `ping` and `aclose`. Every backend implements it and the runtime
  holds one; each consumer asks for the narrowest part it uses (`SharedToken` a
  `SharedState`, the inbox `Claims`), so a test fake or a new backend stays small.

Keys are strings the callers choose; `gateway/store/keys.py` names every one of them.

Which backend (the `store:` URL, built by `factory.open_store`):
- `sqlite:///path.db`, the default: one gateway process, state survives restarts. The file is
  locked, so a second process on it is refused rather than answering retries twice.
- `redis://` (or `rediss://`): several instances behind a load balancer share claims, locks
  and state. `redis+cluster://host1:7000,host2:7001` (or `rediss+cluster://`): the same on a
  Redis Cluster (`redis_url.py`).
- `memory://`: tests and throwaway runs; nothing survives a restart.

One parametrised suite per part (tests/unit/store/) runs against every backend, so they
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from gateway.inbox.feed import JobFeed
    from gateway.models import Job

# Feishu re-pushes an event at 15 s, 5 min, 1 h and 6 h: a claim must outlive ~7.1 h.
DEFAULT_CLAIM_TTL = 8 * 3600.0


class StoreUnavailable(Exception):
    """The backend did not answer. The edge answers 503 so the platform retries."""


class Claims(Protocol):
    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        """Claim every key for `ttl` seconds, atomically: all or nothing.

        Returns False, changing nothing, if any key is already claimed. This is the dedupe
        that makes a platform retry (on any instance) a no-op."""


class Inbox(Protocol):
    async def accept(self, keys: Sequence[str], job: Job, ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        """Claim every key for `ttl` seconds and keep `job` in the inbox, atomically: both
        or neither. False, changing nothing, if any key is already claimed.

        Raises `StoreUnavailable` when the outcome is unknown (no answer in time): the edge
        answers 503, and the platform's retry then finds either nothing (and is accepted)
        or the claim (a duplicate, whose job is kept already)."""

    def feed(self, *, lease_s: float) -> JobFeed:
        """This instance's side of the inbox (one per process). `lease_s`: how long a job's
        owner may go silent before another instance takes its work over."""


class Conversations(Protocol):
    async def get_conversation(self, key: str) -> str | None:
        """The Dify conversation id remembered for `key`, if any."""

    async def set_conversation(self, key: str, conversation_id: str) -> None:
        """Remember `conversation_id` for `key` (no expiry), replacing any earlier one."""

    async def delete_conversation(self, key: str) -> bool:
        """Forget the conversation; True if there was one."""


class Locks(Protocol):
    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        """Hold `key` exclusively (across instances for Redis). `ttl` bounds how long a
        crashed holder can block others; a live holder keeps it renewed."""


class SharedState(Protocol):
    async def get(self, key: str) -> str | None:
        """The value under `key`, or None if it was never set, was deleted or expired."""

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store `value` under `key`, expiring after `ttl` seconds (None: never)."""

    async def delete(self, key: str) -> None:
        """Remove `key`; nothing happens if it is absent."""

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add `delta` to an integer counter and return the new value; `ttl` (re)sets its
        expiry."""


# What a subscription yields when messages on its channel may have been lost: the subscriber
# fell behind, or the instance's subscription connection broke and is back. Whoever must not
# miss a message keeps its state in `SharedState` too, and re-reads it on a gap.
GAP: Final = ""


class Subscription(Protocol):
    """The messages published on one channel since `subscribe()` returned, in the order they
    were published, with `GAP` where some may be missing. Iteration ends after `aclose()`."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None:
        """Stop listening (idempotent)."""


class Broadcast(Protocol):
    async def publish(self, channel: str, data: str) -> None:
        """Hand `data` (not empty) to every current subscriber of `channel`, on every
        instance. At most once: no history, and nobody listening means nobody gets it."""

    async def subscribe(self, channel: str) -> Subscription:
        """Listen to `channel`. Returns once every message published from then on reaches
        the subscription; raises `StoreUnavailable` if the backend cannot promise that."""


class Store(Claims, Inbox, Conversations, Locks, SharedState, Broadcast, Protocol):
    """Everything a backend provides: what the runtime opens and hands out in parts."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the backend answers."""

    async def aclose(self) -> None:
        """Release connections and files; the store is not used afterwards."""
