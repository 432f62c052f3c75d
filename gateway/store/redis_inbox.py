"""The durable inbox on Redis: stream shards, each worked on by one instance at a time.

Accepting a message claims its dedupe keys and `XADD`s the job to the stream of its
conversation's shard, in a Lua call: both happen or neither does. The accepts of a burst
(the concurrent webhooks, gathered as gateway/store/settle.py says) go as one call, which
decides each job on its own (on a Redis Cluster: one call per shard, as a call's keys must
share a slot): a script call costs Redis about as much as the three writes of an accept, so
a burst pays it once.

Order within a conversation, across instances, comes from **shard ownership**: every job of
a conversation goes to the same shard (a hash of the conversation key: `Job.queue_key`, a
lane of its own for the jobs that must not wait behind it), and each shard has
one owner at a time, holding a lease it renews by heartbeat. The owner reads the shard's
stream in order, through a consumer group, and runs each conversation's jobs one after the
other. A per-conversation lock with sequence numbers was the alternative; it costs round
trips on every job (take the lock, check the sequence, renew while streaming), where a
lease costs one renewal per shard every few seconds, and it needs a way to skip the number
of a job that went to the dead letters. Instances share the shards evenly (each takes up to
its fair share and lets go of the excess, once it has finished the work it holds there).

Takeover: a lease that is not renewed for `lease_s` (a crash, a frozen process) expires; the
next instance to take the shard claims its pending entries (`XAUTOCLAIM`) and runs them
first, resuming each from its checkpoint. An instance that finds its lease gone (it was too
slow to renew it) stops working on that shard at once. Leases, the heartbeat and reading
the shards are this instance's side, in gateway/store/redis_feed.py.

Keys: everything of one shard carries the hash tag `{inbox:<n>}` (the stream, its lease,
its dedupe claims, its job checkpoints, its dead letters), so a shard lives in one slot and
the Lua calls work on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.inbox.feed import JobRecord
from gateway.models import Job
from gateway.store.base import StoreUnavailable
from gateway.store.redis_client import RedisConnection
from gateway.store.settle import HalfBatches

log = logging.getLogger(__name__)

GROUP = "workers"
CHECKPOINT_TTL_MS = 24 * 3600 * 1000
DEAD_LETTERS_KEPT = 10_000  # per shard, oldest dropped first
ACCEPT_TIMEOUT_S = 2.0  # well inside the platforms' ack deadlines (Slack: 3 s)
ACCEPTS_PER_CALL = 256  # jobs per accept call, at most: Redis runs nothing else meanwhile

# The accepts of a burst. ARGV[1] is how many jobs; then, for each, how many claim keys it
# has, their time to live in ms, the job and its id. KEYS hold each job's stream and then its
# claim keys. Each claim is a SET NX: a duplicate stops at its first claimed key, and the keys
# claimed for it before that are deleted again (they were free), so nothing changes for it.
# Returns a string with 1 (kept) or 0 (a duplicate) per job: one reply to parse, not one per job.
_ACCEPT = """
local kept = {}
local k = 1
for i = 1, tonumber(ARGV[1]) do
  local a = 4 * i - 2
  local claims = tonumber(ARGV[a])
  local ok = '1'
  for c = k + 1, k + claims do
    if not redis.call('SET', KEYS[c], ARGV[a + 3], 'NX', 'PX', ARGV[a + 1]) then
      for d = k + 1, c - 1 do redis.call('DEL', KEYS[d]) end
      ok = '0'
      break
    end
  end
  if ok == '1' then redis.call('XADD', KEYS[k], '*', 'job', ARGV[a + 2]) end
  kept[i] = ok
  k = k + 1 + claims
end
return table.concat(kept)
"""
_BEGIN = """
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {attempts, redis.call('HGET', KEYS[1], 'state') or ''}
"""
_CHECKPOINT = """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_FINISH = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
_DEAD = """
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*',
  'job', ARGV[3], 'reason', ARGV[4], 'attempts', ARGV[5], 'at', ARGV[7])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""


class ShardKeys:
    """The names of one inbox's keys."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self.instances = f"{prefix}inbox:instances"

    def shard_of(self, queue_key: str) -> int:
        return zlib.crc32(queue_key.encode()) % self.shards

    def _tag(self, shard: int) -> str:
        return f"{self.prefix}{{inbox:{shard}}}:"

    def stream(self, shard: int) -> str:
        return self._tag(shard) + "jobs"

    def lease(self, shard: int) -> str:
        return self._tag(shard) + "lease"

    def epoch(self, shard: int) -> str:
        return self._tag(shard) + "epoch"

    def claim(self, shard: int, key: str) -> str:
        return self._tag(shard) + "claim:" + key

    def record(self, shard: int, job_id: str) -> str:
        return self._tag(shard) + "job:" + job_id

    def dead(self, shard: int) -> str:
        return self._tag(shard) + "dead"


class RedisInbox:
    """Accepting jobs (batched per burst) and this instance's feed of jobs."""

    def __init__(self, connection: RedisConnection, keys: ShardKeys) -> None:
        self._connection = connection
        self._redis = redis = connection.client  # a server's client or a cluster's
        self.keys = keys
        self._do = connection.call
        self._accept = redis.register_script(_ACCEPT)
        # Queued accepts, by the group that goes in one call (its shard on a cluster)
        self._accepts: dict[int, list[_Accept]] = {}
        # Sends them in two alternating halves (gateway/store/settle.py).
        self._pacing = HalfBatches(self._send_accepts)
        self._begin = redis.register_script(_BEGIN)
        self._checkpoint = redis.register_script(_CHECKPOINT)
        self._finish = redis.register_script(_FINISH)
        self._dead = redis.register_script(_DEAD)

    # --- accepting -------------------------------------------------------------------

    async def accept(self, dedupe_keys: Sequence[str], job: Job, ttl: float) -> bool:
        shard = self.keys.shard_of(job.queue_key)
        claims = [self.keys.claim(shard, k) for k in dict.fromkeys(dedupe_keys)]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        group = self._accepts.setdefault(shard if self._connection.cluster else 0, [])
        group.append(
            _Accept(
                [self.keys.stream(shard), *claims],
                [len(claims), max(1, int(ttl * 1000)), job.to_json(), job.job_id],
                future,
            )
        )
        self._pacing.add()
        return await future

    def _send_accepts(self) -> int:
        """One call per group of the queued accepts (at most ACCEPTS_PER_CALL jobs each);
        returns how many calls."""
        groups, self._accepts = self._accepts, {}
        calls = 0
        for group in groups.values():
            for start in range(0, len(group), ACCEPTS_PER_CALL):
                part = group[start : start + ACCEPTS_PER_CALL]
                keys = [name for accept in part for name in accept.keys]
                args = [len(part), *(arg for accept in part for arg in accept.args)]
                reply = self._connection.script(self._accept, keys, args, within=ACCEPT_TIMEOUT_S)
                returned = functools.partial(self._accept_returned, part)
                asyncio.ensure_future(reply).add_done_callback(returned)
                calls += 1
        return calls

    def _accept_returned(self, part: list[_Accept], reply: asyncio.Future[Any]) -> None:
        self._pacing.returned(len(part))
        _settle(part, reply)

    # --- per job -----------------------------------------------------------------------

    async def begin(self, job: Job) -> JobRecord:
        name = self.keys.record(self.keys.shard_of(job.queue_key), job.job_id)
        attempts, state = await self._connection.script(self._begin, [name], [CHECKPOINT_TTL_MS])
        checkpoint = orjson.loads(state) if state else {}
        return JobRecord(int(attempts), checkpoint if isinstance(checkpoint, dict) else {})

    async def save(self, job: Job, state: Mapping[str, Any]) -> None:
        name = self.keys.record(self.keys.shard_of(job.queue_key), job.job_id)
        data = orjson.dumps(dict(state))
        await self._connection.script(self._checkpoint, [name], [data, CHECKPOINT_TTL_MS])

    async def finish(self, job: Job, entry: str) -> None:
        shard = self.keys.shard_of(job.queue_key)
        names = [self.keys.stream(shard), self.keys.record(shard, job.job_id)]
        await self._connection.script(self._finish, names, [GROUP, entry])

    async def dead_letter(self, job: Job, entry: str, reason: str, attempts: int) -> None:
        shard = self.keys.shard_of(job.queue_key)
        names = [
            self.keys.stream(shard),
            self.keys.record(shard, job.job_id),
            self.keys.dead(shard),
        ]
        args: list[str | bytes | int | float] = [
            GROUP,
            entry,
            job.to_json(),
            reason,
            attempts,
            DEAD_LETTERS_KEPT,
            time.time(),
        ]
        await self._connection.script(self._dead, names, args)


@dataclass(slots=True)
class _Accept:
    """One job's part of an accept call: its keys, its arguments, who waits for it."""

    keys: list[str]
    args: list[Any]
    future: asyncio.Future[bool]


def _settle(part: list[_Accept], reply: asyncio.Future[Any]) -> None:
    """Hand each job of an accept call its outcome (or the call's failure)."""
    failure = None if reply.cancelled() else reply.exception()
    if reply.cancelled() or failure is not None:
        error = failure or StoreUnavailable("redis: the accept was cancelled")
    else:
        kept = reply.result()
        if isinstance(kept, bytes):
            kept = kept.decode("ascii", "replace")
        if not isinstance(kept, str) or len(kept) != len(part) or kept.strip("01"):
            error = StoreUnavailable(f"redis: unexpected accept reply {kept!r:.80}")
        else:
            for accept, one in zip(part, kept, strict=True):
                if not accept.future.done():
                    accept.future.set_result(one == "1")
            return
    for accept in part:
        if not accept.future.done():
            accept.future.set_exception(error)
