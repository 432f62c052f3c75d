"""Calls to Redis, batched: whatever concurrent coroutines ask within one loop tick goes out
as one pipeline (on one server, on a connection of the batcher's own).

Why: a burst keeps hundreds of answers in flight, and each makes about eight store calls
one after the other (start the job, read its conversation, checkpoints, remember the
conversation, record the answer, take it out of the inbox). Sent one by one through the
client, every call took a connection from the pool (a lock, a condition, a check that the
socket is clean), ran under timeouts of its own (on Python 3.11 a write's `wait_for` is a
task per command) and cost a round trip of its own. Here a batch of calls costs one write,
one timeout and one round trip, so most calls cost a share of one.

While every connection of the batcher has a batch in flight, new calls wait for the next
free one and go together: the busier the store, the larger the batches. Lua scripts go as
`EVALSHA`, and the first batch to use a script (since the batcher last connected: Redis
may have restarted) carries its `SCRIPT LOAD` ahead of it in the same write, so a script
has always run when its reply is lost. A server that still lacks one (`SCRIPT FLUSH`)
refuses the call (`NOSCRIPT`: it did not run), and it is loaded and sent again.

On a Redis Cluster (`ClusterBatcher`) a batch goes out as redis-py's cluster pipeline, which
splits it by node and follows redirections; scripts go as `EVAL` there (see
`RedisConnection.queue_script`).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import DataError, NoScriptError, RedisError, ResponseError

from gateway.store.base import StoreUnavailable

CONNECTIONS = 2  # batches in flight at once
MAX_BATCH = 512  # calls per batch, at most: a huge one would hold up the loop as it is parsed


@dataclass(slots=True)
class _Call:
    command: tuple[Any, ...]
    script: AsyncScript | None
    future: asyncio.Future[Any]


class _Batches(ABC):
    """The calls of one loop tick, queued; subclasses send them."""

    def __init__(self) -> None:
        self._queue: list[_Call] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        # This tick's calls that must be answered in time, by their bound: one timer for
        # all of them (a webhook burst's accepts), instead of a timeout each.
        self._timed: dict[float, list[_Call]] = {}

    def command(self, *command: Any) -> asyncio.Future[Any]:
        """Send one command with the next batch. Its future resolves to Redis's reply
        as it is (decoded, no redis-py reply parsing: `SET` answers "OK" or None)."""
        return self._add(command, None)

    def script(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        within: float | None = None,
    ) -> asyncio.Future[Any]:
        """Run a Lua script with the next batch; resolves to its reply. With `within`, to
        `StoreUnavailable` if there is none after so many seconds (the script may still
        run: the caller cannot tell)."""
        return self._add(("EVALSHA", script.sha, len(keys), *keys, *args), script, within)

    def _add(
        self, command: tuple[Any, ...], script: AsyncScript | None, within: float | None = None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(StoreUnavailable("redis: the store is closed"))
            return future
        call = _Call(command, script, future)
        self._queue.append(call)
        if within is not None:
            timed = self._timed.get(within)
            if timed is None:
                timed = self._timed[within] = []
                loop.call_later(within, _expire, timed, within)
            timed.append(call)
        if not self._scheduled:
            # At the end of this tick: every call made in it goes in the same batch.
            self._scheduled = True
            loop.call_soon(self._end_of_tick)
        return future

    def _end_of_tick(self) -> None:
        self._scheduled = False
        self._timed = {}
        self._dispatch()

    @abstractmethod
    def _dispatch(self) -> None:
        """Send what is queued (called at the end of the tick that queued the first call)."""

    def _start(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(sending)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def aclose(self) -> None:
        self._closed = True
        queued, self._queue = self._queue, []
        _fail(queued, StoreUnavailable("redis: the store is closed"))
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Batcher(_Batches):
    """Sends calls in batches over a few connections of its own to one Redis server.

    `timeout` bounds a batch's exchange (write and every reply); a batch that takes longer
    fails every call in it with `StoreUnavailable`, and its connection is closed (the
    replies still on their way would answer the next batch's calls)."""

    def __init__(self, client: aioredis.Redis, *, timeout: float) -> None:
        super().__init__()
        pool = client.connection_pool
        # No socket timeouts (one per read and a task per write): the batch's timeout
        # bounds the whole exchange. No health checks (a PING before a write now and
        # then): a connection that died fails its batch, and the next one reconnects.
        options = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        self._idle: list[AbstractConnection] = [
            pool.connection_class(**options) for _ in range(CONNECTIONS)
        ]
        self._all = list(self._idle)
        self._timeout = timeout
        self._loaded: set[str] = set()  # the scripts loaded since the last (re)connect

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._start(self._send(self._idle.pop(), batch))

    async def _send(self, connection: AbstractConnection, batch: list[_Call]) -> None:
        try:
            if _closed_by_server(connection):
                # Redis restarted, or closed the idle connection: open a new one rather
                # than fail a batch that never reached it.
                await connection.disconnect(nowait=True)
            if not connection.is_connected:
                self._loaded.clear()  # a new connection: maybe a new (restarted) server
            loads = self._loads(batch)
            async with asyncio.timeout(self._timeout):
                commands = [*loads, *(call.command for call in batch)]
                replies = (await self._exchange(connection, commands))[len(loads) :]
                replies = await self._load_missing(connection, batch, replies)
        except (RedisError, OSError, TimeoutError) as exc:
            await connection.disconnect(nowait=True)
            _fail(batch, StoreUnavailable(f"redis: {type(exc).__name__}: {exc}"))
        except BaseException:
            await connection.disconnect(nowait=True)
            _fail(batch, StoreUnavailable("redis: the call was cancelled"))
            raise
        else:
            _answer(batch, replies)
        finally:
            self._idle.append(connection)
            if self._queue and not self._closed:
                self._dispatch()

    def _loads(self, batch: list[_Call]) -> list[tuple[Any, ...]]:
        """`SCRIPT LOAD` for the batch's scripts not loaded yet."""
        loads: list[tuple[Any, ...]] = []
        for call in batch:
            script = call.script
            if script is not None and script.sha not in self._loaded:
                self._loaded.add(script.sha)
                loads.append(("SCRIPT", "LOAD", script.script))
        return loads

    async def _load_missing(
        self, connection: AbstractConnection, batch: list[_Call], replies: list[Any]
    ) -> list[Any]:
        """Load the scripts the server did not have and run their calls again."""
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if not missing:
            return replies
        scripts: dict[str, Any] = {}
        for i in missing:
            script = batch[i].script
            if script is not None:
                scripts[script.sha] = script.script
        loads = [("SCRIPT", "LOAD", text) for text in scripts.values()]
        again = await self._exchange(connection, [*loads, *(batch[i].command for i in missing)])
        for i, reply in zip(missing, again[len(loads) :], strict=True):
            replies[i] = reply
        return replies

    @staticmethod
    async def _exchange(
        connection: AbstractConnection, commands: list[tuple[Any, ...]]
    ) -> list[Any]:
        await connection.send_packed_command(pack(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # this call's error; the others stand
                replies.append(error)
        return replies

    async def aclose(self) -> None:
        await super().aclose()
        for connection in self._all:
            await connection.disconnect()


class ClusterBatcher(_Batches):
    """Sends each tick's calls as one cluster pipeline, through `call` (which bounds the
    calls at once and turns failures into `StoreUnavailable`). Replies are parsed by
    redis-py there (`SET` answers True or None)."""

    def __init__(self, client: RedisCluster, call: Callable[[Callable[[], Any]], Any]) -> None:
        super().__init__()
        self._client = client
        self._call = call

    def _dispatch(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._start(self._send(batch))

    async def _send(self, batch: list[_Call]) -> None:
        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for call in batch:
                    if call.script is None:
                        pipe.execute_command(*call.command)
                    else:  # EVALSHA sha ... -> EVAL text ...
                        pipe.execute_command("EVAL", call.script.script, *call.command[2:])
                return list(await pipe.execute(raise_on_error=False))

        try:
            replies = await self._call(run)
        except StoreUnavailable as exc:
            _fail(batch, exc)
        except BaseException:
            _fail(batch, StoreUnavailable("redis: the call was cancelled"))
            raise
        else:
            _answer(batch, replies)


def pack(commands: list[tuple[Any, ...]]) -> list[bytes]:
    """Commands in the Redis protocol, as one buffer.

    Not redis-py's packer: it appends each argument to a growing bytes buffer, copying it
    again for every argument up to 6 KB, and a burst's accept call is one command of about
    250 arguments and 27 KB (124 µs to pack a 32-job accept; 39 µs here). Arguments are
    what the gateway sends: str (UTF-8), bytes, int and float; anything else fails the
    batch (`DataError`), as it would in redis-py."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, bytes | bytearray | memoryview):
                data = bytes(arg)
            elif isinstance(arg, int) and not isinstance(arg, bool):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode()
            else:
                raise DataError(f"cannot send a {type(arg).__name__} to Redis")
            out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return [b"".join(out)]


def _answer(batch: list[_Call], replies: list[Any]) -> None:
    for call, reply in zip(batch, replies, strict=True):
        if call.future.done():
            continue  # its caller gave up waiting
        if isinstance(reply, Exception):
            call.future.set_exception(StoreUnavailable(f"redis: {reply}"))
        else:
            call.future.set_result(reply)


def _closed_by_server(connection: AbstractConnection) -> bool:
    """Whether the server has closed the connection since its last batch (the loop has seen
    its end of stream); checked without a round trip, unlike redis-py's pool check."""
    reader: asyncio.StreamReader | None = getattr(connection, "_reader", None)
    return reader is not None and reader.at_eof()


def _expire(calls: list[_Call], within: float) -> None:
    _fail(calls, StoreUnavailable(f"redis: no answer within {within:g} s"))


def _fail(batch: list[_Call], error: StoreUnavailable) -> None:
    for call in batch:
        if not call.future.done():
            call.future.set_exception(error)
