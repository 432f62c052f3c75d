"""This instance's feed of the Redis inbox: its share of the stream shards, held by lease,
and the jobs read from them (the design is in gateway/store/redis_inbox.py).

Each shard has one owner at a time. The owner renews its lease by heartbeat (every third
of `lease_s`, at least every second), reads the shard's stream through the consumer group
in order, and claims the pending entries of a shard it has just taken (`XAUTOCLAIM`): the
jobs a crashed or stopped owner left, resumed from their checkpoints. Instances share the
shards evenly, each taking up to its fair share and letting go of the excess once it has
finished the work it holds there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import ResponseError

from gateway.inbox.feed import JobRecord, LostJobs
from gateway.models import Job
from gateway.store.base import StoreUnavailable
from gateway.store.redis_client import stop
from gateway.store.redis_inbox import GROUP, RedisInbox

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often an idle instance looks for jobs accepted by other instances
BACKLOG_EVERY_S = 1.0
# The heartbeat renews leases at a third of `lease_s`, and at least every second: a new
# instance (a scale-out, a rolling deploy) is counted, and gets its share of the shards,
# within a beat or two of the others, rather than after `lease_s` (15 s by default).
HEARTBEAT_S = 1.0

# A lease is taken with a new epoch (a per-shard counter), so that a lease which lapsed
# while Redis was unreachable can be told apart from one another instance held meanwhile.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
# 1: renewed. 2: it had lapsed and nobody took it since (the epoch is still ours): ours
# again, and the work on it goes on. 0: lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def instance_name() -> str:
    """A name for this process in Redis (consumer names, leases): readable, and unique even
    when a restarted container keeps its host name."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("inbox batch failed: %s", task.exception())


class RedisShardFeed:
    """This instance's share of the shards, kept by lease, and the jobs read from them."""

    def __init__(self, inbox: RedisInbox, *, instance: str, lease_s: float) -> None:
        self._inbox = inbox
        self._redis = inbox._redis
        self._keys = inbox.keys
        self._do = inbox._do
        self._take = self._redis.register_script(_TAKE)
        self._renew_lease = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self.instance = instance
        self._lease_ms = max(1, int(lease_s * 1000))
        self._lease_s = lease_s
        self._owned: set[int] = set()
        self._epochs: dict[int, int] = {}  # shard -> the epoch of our lease on it
        self._releasing: set[int] = set()  # owned, read nothing more, let go once idle
        self._reclaim: set[int] = set()  # just acquired: claim its pending entries first
        self._work: dict[int, int] = {}  # shard -> jobs handed out and not done
        self._entries: dict[str, tuple[str, int]] = {}  # job id -> (entry id, shard), handed out
        # Jobs of shards this instance lost whose attempt here is still ending (cancelled,
        # not done yet): a shard taken back meanwhile must hand them out again once done.
        self._unwinding: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._on_lost: LostJobs | None = None
        self._last_renewed = time.monotonic()
        self._live = 1
        self._backlog = 0
        self._backlog_at = 0.0
        self._accepted_since = 0
        self._stopping = False
        self._others = 0  # live instances besides this one, counted at stop_taking()

    # --- JobFeed ---------------------------------------------------------------------

    async def start(self, on_lost: LostJobs) -> None:
        self._on_lost = on_lost
        for shard in range(self._keys.shards):
            await self._create_group(self._keys.stream(shard))
        await self._beat()
        self._heartbeat = asyncio.create_task(self._heartbeat_forever(), name="inbox heartbeat")

    async def take(self, limit: int, wait: float) -> list[Job]:
        if self._stopping:
            await asyncio.sleep(wait)
            return []
        jobs = await self._reclaimed(limit)
        if not jobs:
            jobs = await self._read(limit)
        if not jobs:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, POLL_S)):
                    await self._wake.wait()
        return jobs

    async def begin(self, job: Job) -> JobRecord:
        record = await self._inbox.begin(job)
        self._attempts[job.job_id] = record.attempts
        return record

    async def checkpoint(self, job: Job, state: Mapping[str, Any]) -> None:
        await self._inbox.save(job, state)

    async def finish(self, job: Job) -> None:
        handed = self._entries.get(job.job_id)
        if handed is not None:
            await self._inbox.finish(job, handed[0])

    async def dead_letter(self, job: Job, reason: str) -> None:
        handed = self._entries.get(job.job_id)
        if handed is not None:
            attempts = self._attempts.get(job.job_id, 0)
            await self._inbox.dead_letter(job, handed[0], reason, attempts)

    def done(self, job: Job) -> None:
        self._entries.pop(job.job_id, None)
        self._unwinding.discard(job.job_id)
        self._attempts.pop(job.job_id, None)
        shard = self._keys.shard_of(job.queue_key)
        left = self._work.get(shard, 0) - 1
        if left > 0:
            self._work[shard] = left
        else:
            self._work.pop(shard, None)
            if shard in self._releasing:
                task = asyncio.get_running_loop().create_task(self._let_go([shard]))
                task.add_done_callback(_retrieve)

    def accepted(self, job: Job) -> None:
        self._accepted_since += 1
        if self._keys.shard_of(job.queue_key) in self._owned:
            self._wake.set()  # ours: take it now rather than at the next poll

    def backlog(self) -> int:
        return self._backlog + self._accepted_since

    async def pending(self) -> int:
        await self._count_backlog()
        return self._backlog

    def waiting(self) -> int:
        return 0

    def instances(self) -> int:
        return self._live

    async def stop_taking(self) -> None:
        self._stopping = True
        self._releasing |= self._owned
        idle = [s for s in self._owned if not self._work.get(s)]
        await self._let_go(idle)
        # Out of the instances (we are stopping), then count the ones left.
        self._others = await self._do(lambda: self._register(time.time()))

    def others_take_over(self) -> bool:
        return self._others > 0

    async def close(self) -> None:
        self._stopping = True
        if self._heartbeat is not None:
            await stop(self._heartbeat)
        with contextlib.suppress(StoreUnavailable):
            await self._let_go(list(self._owned))
            await self._do(lambda: self._redis.zrem(self._keys.instances, self.instance))

    async def _create_group(self, stream: str) -> None:
        """The consumer group of a shard, reading from the start (jobs accepted before any
        instance ever ran are delivered too)."""

        async def create() -> None:
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # BUSYGROUP: it exists already
                    raise

        await self._do(create)

    # --- reading ---------------------------------------------------------------------

    def _readable(self) -> list[int]:
        return sorted(self._owned - self._releasing - self._reclaim)

    async def _read(self, limit: int) -> list[Job]:
        shards = self._readable()
        if not shards or limit <= 0:
            return []
        count = max(1, math.ceil(limit / len(shards)))
        shard_of = {self._keys.stream(shard): shard for shard in shards}
        connection = self._inbox._connection
        # One command reads every shard on one server; a cluster needs one per shard (the
        # keys of a command must share a slot).
        reads = [[name] for name in shard_of] if connection.cluster else [list(shard_of)]
        replies = await asyncio.gather(
            *(connection.command(*self._read_command(names, count)) for names in reads)
        )
        jobs: list[Job] = []
        for reply in replies:
            for stream, entries in _stream_entries(reply):
                entries = [_fields(e) for e in entries]
                jobs += self._hand_out(shard_of[str(stream)], entries)[0]
        return jobs

    def _read_command(self, streams: list[str], count: int) -> list[Any]:
        """XREADGROUP of entries never handed out, at most `count` from each stream."""
        ids = [">"] * len(streams)
        return [
            "XREADGROUP",
            "GROUP",
            GROUP,
            self.instance,
            "COUNT",
            count,
            "STREAMS",
            *streams,
            *ids,
        ]

    async def _reclaimed(self, limit: int) -> list[Job]:
        """The pending entries of shards just acquired: the last owner took them and did
        not finish them. They run before anything newer of their shard."""
        jobs: list[Job] = []
        for shard in sorted(self._reclaim):
            stream, start = self._keys.stream(shard), "0-0"
            resumed: list[Job] = []
            unwinding = False
            while True:
                reply = await self._claim_pending(stream, start)
                start, entries = str(reply[0]), reply[1]
                # Redis 6.2 lists entries deleted meanwhile as (None, None).
                handed, busy = self._hand_out(shard, [e for e in entries if e and e[0] is not None])
                resumed += handed
                unwinding = unwinding or busy
                if start == "0-0":
                    break
            if not unwinding:
                self._reclaim.discard(shard)  # else again on the next take, once they ended
            if resumed:
                log.info("inbox shard %d taken over: resuming %d jobs", shard, len(resumed))
            jobs += resumed
        return jobs

    async def _claim_pending(self, stream: str, start: str) -> Any:
        async def claim() -> Any:
            return await self._redis.xautoclaim(stream, GROUP, self.instance, 0, start, count=100)

        return await self._do(claim)

    def _hand_out(self, shard: int, entries: Sequence[Any]) -> tuple[list[Job], bool]:
        """The jobs of `entries` not handed out already, and whether one was left out
        because an attempt of it that this instance lost is still ending."""
        jobs: list[Job] = []
        unwinding = False
        if shard not in self._owned:
            # Let go of while they were being read (shutting down, or handed to another
            # instance): they stay pending, and the shard's next owner claims them.
            return jobs, unwinding
        for entry in entries:
            entry_id, fields = entry[0], entry[1]
            raw = fields.get("job") if isinstance(fields, dict) else None
            try:
                job = Job.from_json(raw or "")
            except ValueError:
                log.error("inbox shard %d: entry %s is not a job; dropping it", shard, entry_id)
                task = asyncio.get_running_loop().create_task(self._drop(shard, str(entry_id)))
                task.add_done_callback(_retrieve)
                continue
            if job.job_id in self._entries:
                unwinding = unwinding or job.job_id in self._unwinding
                continue  # already handed out (claimed back from ourselves)
            self._entries[job.job_id] = (str(entry_id), shard)
            self._work[shard] = self._work.get(shard, 0) + 1
            jobs.append(job)
        return jobs, unwinding

    async def _drop(self, shard: int, entry: str) -> None:
        stream = self._keys.stream(shard)
        await self._do(lambda: self._redis.xack(stream, GROUP, entry))
        await self._do(lambda: self._redis.xdel(stream, entry))

    # --- leases ----------------------------------------------------------------------

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self._lease_s / 3, HEARTBEAT_S))
            try:
                await self._beat()
            except StoreUnavailable as exc:
                log.warning("inbox heartbeat failed: %s", exc)
                if self._owned and time.monotonic() - self._last_renewed > self._lease_s * 0.9:
                    # Our leases may have expired: another instance may be resuming these
                    # jobs now. Stop working on them.
                    log.warning("inbox: leases not renewed in time; stopping work on shards")
                    self._lose(set(self._owned))

    async def _beat(self) -> None:
        now = time.time()
        await self._renew()
        self._live = max(1, await self._do(lambda: self._register(now)))
        if time.monotonic() - self._backlog_at >= BACKLOG_EVERY_S:
            await self._count_backlog()
        if self._stopping:
            return
        fair = math.ceil(self._keys.shards / max(1, self._live))
        if len(self._owned) < fair:
            await self._acquire(fair - len(self._owned))
        elif len(self._owned) > fair:
            excess = sorted(self._owned - self._releasing, key=lambda s: self._work.get(s, 0))
            extra = len(self._owned) - len(self._releasing) - fair
            if extra > 0:
                chosen = excess[:extra]
                self._releasing |= set(chosen)
                await self._let_go([s for s in chosen if not self._work.get(s)])

    async def _register(self, now: float) -> int:
        """Say this instance is alive (unless it is shutting down: the others then count
        it out of the fair share), and count the instances that are."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if self._stopping:
                pipe.zrem(self._keys.instances, self.instance)
            else:
                pipe.zadd(self._keys.instances, {self.instance: now + self._lease_s})
            pipe.zremrangebyscore(self._keys.instances, "-inf", now)
            pipe.zcard(self._keys.instances)
            results = await pipe.execute()
        return int(results[2])

    async def _renew(self) -> None:
        owned = sorted(self._owned)
        if owned:

            async def renew() -> list[Any]:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for shard in owned:
                        await self._inbox._connection.queue_script(
                            pipe,
                            self._renew_lease,
                            [self._keys.lease(shard), self._keys.epoch(shard)],
                            [self.instance, self._lease_ms, self._epochs.get(shard, 0)],
                        )
                    return list(await pipe.execute())

            results: list[Any] = await self._do(renew)
            lost = {s for s, r in zip(owned, results, strict=True) if not r}
            lapsed = {s for s, r in zip(owned, results, strict=True) if r == 2}
            if lapsed:
                # Redis was unreachable (frozen, restarting) for longer than the lease, and
                # no other instance took these shards meanwhile: the answers under way here
                # go on, rather than being stopped and started again.
                log.info("inbox: the leases of shards %s lapsed; nobody took them: kept", lapsed)
            if lost:
                log.warning("inbox: lost the lease of shards %s (another instance took it)", lost)
                self._lose(lost)
        self._last_renewed = time.monotonic()

    async def _acquire(self, wanted: int) -> None:
        free = [s for s in range(self._keys.shards) if s not in self._owned]
        random.shuffle(free)
        for shard in free:
            if wanted <= 0:
                break
            if await self._take_lease(shard):
                wanted -= 1
                # The group exists unless Redis lost its data (a restart without
                # persistence): then it is made again here, or nothing would be read.
                await self._create_group(self._keys.stream(shard))
                self._owned.add(shard)
                self._reclaim.add(shard)
                self._wake.set()
        if self._reclaim:
            log.info("inbox: this instance now works on shards %s", sorted(self._owned))

    async def _take_lease(self, shard: int) -> bool:
        keys = [self._keys.lease(shard), self._keys.epoch(shard)]
        args: list[str | int] = [self.instance, self._lease_ms]
        epoch = int(await self._do(lambda: self._take(keys=keys, args=args)))
        if epoch:
            self._epochs[shard] = epoch
        return epoch > 0

    async def _let_go(self, shards: Sequence[int]) -> None:
        for shard in shards:
            if shard not in self._owned:
                continue
            self._owned.discard(shard)
            self._releasing.discard(shard)
            self._reclaim.discard(shard)
            await self._do(self._release_call(shard))

    def _release_call(self, shard: int) -> Callable[[], Awaitable[Any]]:
        lease = self._keys.lease(shard)
        return lambda: self._release(keys=[lease], args=[self.instance])

    def _lose(self, shards: set[int]) -> None:
        self._unwinding |= {job for job, (_, shard) in self._entries.items() if shard in shards}
        self._owned -= shards
        self._releasing -= shards
        self._reclaim -= shards
        if self._on_lost is not None and shards:
            keys = self._keys
            self._on_lost(lambda job: keys.shard_of(job.queue_key) in shards)

    async def _count_backlog(self) -> None:
        async def count() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard in range(self._keys.shards):
                    pipe.xlen(self._keys.stream(shard))
                return list(await pipe.execute())

        counted_before = self._accepted_since
        lengths: list[Any] = await self._do(count)
        self._backlog = sum(int(n) for n in lengths)
        self._backlog_at = time.monotonic()
        # Accepts that landed while the count was on its way may be in it or not: keep
        # counting them (an estimate a little high, never one that lets a flood through).
        self._accepted_since -= counted_before


def _fields(entry: Any) -> Any:
    """A stream entry as (id, fields as a dict): Redis sends the fields as a flat list,
    which redis-py turns into a dict only where it parses the reply (on a cluster)."""
    if not entry or not isinstance(entry[1], list):
        return entry
    fields = entry[1]
    return (entry[0], dict(zip(fields[::2], fields[1::2], strict=True)))


def _stream_entries(reply: Any) -> list[tuple[Any, Sequence[Any]]]:
    """XREADGROUP's reply as (stream, entries) pairs, whichever RESP shape it came in."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(name, entries) for name, entries in reply.items()]
    return [(item[0], item[1]) for item in reply]
