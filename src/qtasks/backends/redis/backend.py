"""``redis://``: the production backend. Broker and result store in one Redis (or Sentinel, or
Cluster), each worker round trip one script call.

The classes here only pick a connection and run ``protocol`` operations on it: the blocking
client for the sync app (``SyncConn``), one asyncio client per event loop for the worker and
the async app (``AsyncConn``). Alone, Redis plays both roles through the fused transport and
client below; beside another broker or store, each role works on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from qtasks.backends.base import (
    Backend,
    Broker,
    Cursor,
    DeadLetter,
    Delivery,
    Exchange,
    FinishReport,
    NewTask,
    Outcome,
    QueueStats,
    ResultStore,
    StoreStats,
    SyncBroker,
    SyncResultStore,
    WorkerInfo,
    WorkerRow,
)
from qtasks.backends.loops import PerLoop
from qtasks.backends.redis import protocol
from qtasks.backends.redis.connection import (
    SUBSCRIPTION_LOST,
    AsyncConn,
    SyncConn,
    parse_url,
)
from qtasks.backends.transport import Client, Kept, Transport, after_kept, count_live, merge
from qtasks.backends.urls import redact
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES
from qtasks.core.waiting import run_async, run_sync, wait_for_final

# Seconds between reads of a record waited for, as a backstop only: a wait is told of the
# record's final write by a notice, and of a lost subscription (the notice may have gone with
# it) by the end of its pause, and then reads the record again either way. Only where both
# hold: a subscription read by qtasks itself (``wire.py``; redis-py's ``PubSub`` reconnects
# and subscribes again on its own, without telling), and a wait for final statuses only (the
# writes that send notices). Elsewhere, and on a Cluster client without pub/sub, every second.
RECHECK = 30.0


class RedisBackend(Backend):
    """A Redis URL for the app ``name``; see ``connection`` for the URL forms and options."""

    stores_records = True

    def __init__(self, url: str, *, name: str = "QueueTasks") -> None:
        self.url = url
        self._shown = redact(url)
        self.settings = parse_url(url)
        self.keys = protocol.Keys(name, self.settings.prefix)
        self._sync: SyncConn | None = None
        self.paired_storage: Backend | None = None  # set by qtasks.brokers (QTasks' storage=)
        self.conns = PerLoop(lambda: AsyncConn(self.settings, self.keys))

    def __repr__(self) -> str:
        return f"<RedisBackend {self._shown}>"

    @property
    def sync(self) -> SyncConn:
        if self._sync is None:
            self._sync = SyncConn(self.settings, self.keys)
        return self._sync

    def describe(self) -> str:
        kind = {"single": "redis", "sentinel": "redis (sentinel)",
                "cluster": "redis (cluster)"}[self.settings.kind]
        return f"{kind} {self._shown} (keys {self.keys.prefix}*)"

    def broker_roles(self) -> tuple[Broker, SyncBroker]:
        return RedisBroker(self), SyncRedisBroker(self)

    def store_roles(self) -> tuple[ResultStore, SyncResultStore]:
        return RedisStore(self), SyncRedisStore(self)

    def fused_transport(self) -> RedisTransport:
        return RedisTransport(RedisBroker(self), RedisStore(self))

    def fused_client(self) -> RedisClient:
        return RedisClient(SyncRedisBroker(self), SyncRedisStore(self))

    def insert_raw(self, payload: str, queue: str = "default", priority: int = 0,
                   uuid: str | None = None) -> None:
        """Queue a raw message, bypassing the codec (to test what a worker does with it)."""
        task = NewTask(uuid=uuid or "", task_name="", priority=priority, args_json="[]",
                       kwargs_json="{}", created_at=time.time(), envelope=payload, queue=queue)
        self.sync.run(protocol.enqueue([task], "M"))


class _Kept(Kept):
    """Kept exchange calls; each answers ``(Exchange, next wake)``."""

    async def take(self, waiting: bool = True) -> list[Exchange]:
        """The exchanges of calls cancelled after they took messages."""
        return [exchange for exchange, _ in await super().take(waiting)]


class _Idle:
    """What the last claim of a set of queues saw: it took fewer messages than it could, so
    their ready sets were empty then, and the next due time or lease end. Any message that
    becomes ready later sets a wake marker (enqueue, release) or is due by that time, so an
    idle worker may block on the markers at once instead of first asking for work again."""

    def __init__(self) -> None:
        self.empty: dict[tuple[str, ...], float | None] = {}  # queues -> monotonic wake time

    def saw(self, queues: Sequence[str], got: int, limit: int, wake: float | None) -> None:
        key = tuple(queues)
        if limit > 0 and got < limit:
            self.empty[key] = None if wake is None else time.monotonic() + wake
        else:
            self.empty.pop(key, None)

    def known_empty(self, queues: Sequence[str]) -> tuple[bool, float | None]:
        key = tuple(queues)
        if key not in self.empty:
            return False, None
        due = self.empty.pop(key)  # used once: the next claim tells again
        if due is not None and due <= time.monotonic():
            return False, None
        return True, None if due is None else due - time.monotonic()


async def _blocking(queues: Sequence[str], block: float,
                    attempt: Callable[[float], Awaitable[tuple[Any, float | None]]],
                    idle: _Idle | None = None) -> Any:
    """Call ``attempt(wait)`` until it gives something, for at most ``block`` seconds: each
    attempt but the first first waits up to ``wait`` seconds on the queues' wake markers (no
    longer than the next delayed task or lease deadline that the attempt before reported),
    then claims. With ``idle`` telling that the queues were empty at the last claim, the first
    attempt waits too."""
    deadline = time.monotonic() + block
    wait = 0.0
    if idle is not None and block > 0:
        empty, wake = idle.known_empty(queues)
        if empty:
            wait = block if wake is None else min(block, wake + 0.001)
    while True:
        got, wake = await attempt(wait)
        remaining = deadline - time.monotonic()
        if got or remaining <= 0:
            return got
        wait = remaining if wake is None else min(remaining, wake + 0.001)


# -- the roles -------------------------------------------------------------------------------------


class RedisBroker(Broker):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.kept = _Kept()

    async def _run(self, op: protocol.Op) -> Any:
        return await self.backend.conns.get().run(op)

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self._run(protocol.enqueue(tasks, "M"))

    async def fetch(self, worker: str, queues: Sequence[str], limit: int, lease: float,
                    block: float = 0.0, start: int = 0) -> list[Delivery]:
        kept = [d for earlier in await self.kept.take() for d in earlier.deliveries]
        if kept:
            return kept
        conn = self.backend.conns.get()

        async def attempt(wait: float) -> tuple[list[Delivery], float | None]:
            if wait > 0:
                await conn.block(queues, wait)
            got, wake = await self.kept.call(conn.run(protocol.exchange(
                worker, queues, limit, lease, (), (), start, fused=False)))
            return got.deliveries, wake

        return await _blocking(queues, block, attempt)

    async def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return await self._run(protocol.start_messages(deliveries))

    async def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return await self._run(protocol.finish_messages(deliveries)) if deliveries else []

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        await self._run(protocol.release(deliveries, delay, fused=False))

    async def extend(self, worker: str, deliveries: Sequence[Delivery],
                     lease: float) -> list[Delivery]:
        return await self._run(protocol.extend(deliveries, lease))

    async def discard(self, uuid: str) -> bool:
        return await self._run(protocol.discard(uuid))

    async def stats(self) -> QueueStats:
        return (await self._run(protocol.stats()))[0]

    async def flush(self) -> None:
        await self._run(protocol.flush("Q"))

    async def close(self) -> None:
        await self.backend.conns.close()


class SyncRedisBroker(SyncBroker):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.backend.sync.run(protocol.enqueue(tasks, "M"))

    def discard(self, uuid: str) -> bool:
        return self.backend.sync.run(protocol.discard(uuid))

    def purge(self, queue: str, limit: int) -> list[str]:
        return self.backend.sync.run(protocol.purge(queue, limit))

    def stats(self) -> QueueStats:
        return self.backend.sync.run(protocol.stats())[0]

    def flush(self) -> None:
        self.backend.sync.run(protocol.flush("Q"))

    def close(self) -> None:
        if self.backend._sync is not None:
            self.backend._sync.close()
            self.backend._sync = None


class RedisStore(ResultStore):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.keys = backend.keys

    async def _run(self, op: protocol.Op) -> Any:
        return await self.backend.conns.get().run(op)

    async def create(self, tasks: Sequence[NewTask]) -> None:
        await self._run(protocol.enqueue(tasks, "R"))

    async def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        return await self._run(protocol.mark_running(deliveries))

    async def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        await self._run(protocol.mark_queued(deliveries))

    async def finish(self, outcomes: Sequence[Outcome]) -> FinishReport:
        return await self._run(protocol.finish_records(outcomes))

    async def get(self, uuid: str) -> RecordRow | None:
        return await self._run(protocol.get(self.keys, uuid))

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        conn = self.backend.conns.get()
        await conn.subscribed()
        expected: list[tuple[str, asyncio.Future[RecordRow | None]]] = []

        async def fetch(key: str) -> RecordRow | None:
            if expected and expected[0][0] == key and expected[0][1].done():
                row = expected[0][1].result()  # the notice carried the final record
                if row is not None:
                    return row
            for old in expected:
                conn.forget(*old)
            await conn.subscribed()  # again if the subscription was lost (that ended the pause)
            expected[:] = [(key, conn.expect(key))]  # before the read: no notice slips by
            if conn.fresh == key:  # enqueued watched a moment ago: nothing to read yet
                conn.fresh = None
                return protocol.new_row(key)
            return await conn.run(protocol.watch(self.keys, key, conn.listener))

        async def pause(seconds: float) -> None:
            # Awaited directly, the notice resumes this call in the loop's next step (through
            # asyncio.wait it would take one more). Time up, the future says "no notice" (None):
            # the next fetch reads the record instead.
            future = expected[0][1]
            if future.done():
                return
            timer = asyncio.get_running_loop().call_later(seconds, _no_notice, future)
            try:
                await future
            finally:
                timer.cancel()

        recheck = RECHECK if conn.told_of_losses and FINAL_STATUSES.issuperset(final) else 1.0
        try:
            return await run_async(wait_for_final(uuid, timeout, final, recheck), fetch, pause)
        finally:
            for old in expected:
                conn.forget(*old)

    async def cancel(self, uuid: str, reason: str) -> bool:
        return await self._run(protocol.cancel(uuid, reason, fused=False))

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self._run(protocol.dead_letters(self.keys, limit))

    async def search(self, *, status: str | None = None, task_name: str | None = None,
                     limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return await self._run(protocol.search(status, task_name, limit, before, cursor, queue))

    async def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        await self._run(protocol.heartbeat(info, lease))

    async def unregister(self, worker: str) -> None:
        await self._run(protocol.unregister(worker))

    async def delete_finished(self, older_than: float | None = None) -> int:
        return await self._run(protocol.delete_finished(older_than))

    async def stats(self) -> StoreStats:
        _, store = await self._run(protocol.stats())
        store.workers = count_live(await self._run(protocol.live_workers()))
        return store

    async def flush(self) -> None:
        await self._run(protocol.flush("S"))

    async def close(self) -> None:
        await self.backend.conns.close()


class SyncRedisStore(SyncResultStore):
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.keys = backend.keys

    def create(self, tasks: Sequence[NewTask]) -> None:
        self.backend.sync.run(protocol.enqueue(tasks, "R"))

    def get(self, uuid: str) -> RecordRow | None:
        return self.backend.sync.run(protocol.get(self.keys, uuid))

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        conn = self.backend.sync
        told = conn.told_of_losses()  # subscribed before the first read: no notice slips by
        current: list[Any] = [uuid, None]  # the uuid waited for, the record a notice carried

        def fetch(key: str) -> RecordRow | None:
            if current[0] == key and current[1] is not None:
                return current[1]
            current[:] = [key, None]
            if conn.fresh == key:  # enqueued watched a moment ago: nothing to read yet
                conn.fresh = None
                return protocol.new_row(key)
            return conn.run(protocol.watch(self.keys, key, conn.listener))

        def pause(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                got = conn.next_final(left)
                if got is SUBSCRIPTION_LOST:  # a notice may have gone with it: subscribe
                    conn.subscribed()  # again, then the next fetch reads the record
                    return
                if got is not None and got[0] == current[0]:
                    current[1] = got[1]
                    return

        recheck = RECHECK if told and FINAL_STATUSES.issuperset(final) else 1.0
        return run_sync(wait_for_final(uuid, timeout, final, recheck), fetch, pause)

    def cancel(self, uuid: str, reason: str) -> bool:
        return self.backend.sync.run(protocol.cancel(uuid, reason, fused=False))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.backend.sync.run(protocol.dead_letters(self.keys, limit))

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        return self.backend.sync.run(protocol.delete_dead_letters(self.keys, ids))

    def search(self, *, status: str | None = None, task_name: str | None = None,
               limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return self.backend.sync.run(protocol.search(status, task_name, limit, before, cursor, queue))

    def live_workers(self) -> int:
        return count_live(self.backend.sync.run(protocol.live_workers()))

    def workers(self) -> list[WorkerRow]:
        return [w for w in self.backend.sync.run(protocol.workers())
                if count_live([(w.hostname, w.pid)])]

    def stats(self) -> StoreStats:
        _, store = self.backend.sync.run(protocol.stats())
        store.workers = self.live_workers()
        return store

    def flush(self) -> None:
        self.backend.sync.run(protocol.flush("S"))

    def close(self) -> None:
        if self.backend._sync is not None:
            self.backend._sync.close()
            self.backend._sync = None


# -- both roles in one script call -------------------------------------------------------------------


def _no_notice(future: asyncio.Future[RecordRow | None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisTransport(Transport):
    """Redis as broker and store: enqueue, each worker round trip, heartbeat, release and cancel
    are one script call each."""

    broker: RedisBroker
    store: RedisStore

    def __init__(self, broker: RedisBroker, store: RedisStore) -> None:
        super().__init__(broker, store)
        self.backend = broker.backend
        self.kept = broker.kept
        self.idle = _Idle()

    async def _run(self, op: protocol.Op) -> Any:
        return await self.backend.conns.get().run(op)

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self._run(protocol.enqueue(tasks, "F"))

    async def enqueue_stream(self, tasks: Iterator[NewTask]) -> None:
        await self._run(protocol.enqueue_stream(tasks))

    async def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """Enqueue with the records marked watched, subscribed first: the wait that follows
        reads nothing until the final write's notice brings the record."""
        conn = self.backend.conns.get()
        await conn.subscribed()
        await conn.run(protocol.enqueue(tasks, "F", watcher=conn.listener))
        conn.fresh = tasks[-1].uuid if tasks else None

    async def cancel(self, uuid: str, reason: str) -> bool:
        return await self._run(protocol.cancel(uuid, reason, fused=True))

    async def flush(self) -> None:
        await self._run(protocol.flush("A"))

    async def exchange(self, worker: str, queues: Sequence[str], *, limit: int, lease: float,
                       block: float = 0.0, finished: Sequence[Outcome] = (),
                       started: Sequence[Delivery] = (), start: int = 0) -> Exchange:
        result = Exchange()
        # With something to write, do not wait for a given-up idle wait still in Redis: its
        # answer (almost always empty: the claim behind it is skipped) waits for the next call.
        for earlier in await self.kept.take(waiting=not (finished or started)):
            merge(result, earlier)
        if result.deliveries and not (finished or started):
            return result  # hand them over now: a later await could be cancelled with them
        limit, start = after_kept(result.deliveries, limit, start)
        conn = self.backend.conns.get()
        outcomes: list[Sequence[Outcome]] = [finished]
        starts: list[Sequence[Delivery]] = [started]

        async def attempt(wait: float) -> tuple[Exchange | None, float | None]:
            # waiting first only when idle (nothing to write): the claim rides behind the wait
            idle_wait = conn.new_wait() if wait > 0 else None
            op = protocol.exchange(worker, queues, limit, lease, outcomes[0], starts[0], start,
                                   abandon=idle_wait.abandon if idle_wait else None)
            try:
                got, wake = await self.kept.call(conn.run(
                    op, woken=(queues, wait, idle_wait) if idle_wait else None))
            except asyncio.CancelledError:
                if idle_wait is not None:
                    conn.abandon(idle_wait)  # the call, kept, then returns at once, empty
                raise
            wrote = bool(outcomes[0] or starts[0])
            outcomes[0], starts[0] = (), ()  # written once; a further attempt only fetches
            self.idle.saw(queues, len(got.deliveries), limit, wake)
            return (got if (got.deliveries or wrote) else None), wake

        got = await _blocking(queues, 0.0 if finished or started else block, attempt,
                              self.idle)
        if got is not None:
            merge(result, got)
        return result

    async def heartbeat(self, info: WorkerInfo, deliveries: Sequence[Delivery],
                        lease: float) -> list[Delivery]:
        return await self._run(protocol.heartbeat(info, lease, deliveries))

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        if deliveries:
            await self._run(protocol.release(deliveries, delay, fused=True))

    async def close(self) -> None:
        await self.backend.conns.close()


class RedisClient(Client):
    """The blocking side with the fused enqueue and cancel."""

    broker: SyncRedisBroker

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.broker.backend.sync.run(protocol.enqueue(tasks, "F"))

    def enqueue_stream(self, tasks: Iterator[NewTask]) -> None:
        self.broker.backend.sync.run(protocol.enqueue_stream(tasks))

    def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """See :meth:`RedisTransport.enqueue_watched`."""
        conn = self.broker.backend.sync
        conn.subscribed()
        conn.run(protocol.enqueue(tasks, "F", watcher=conn.listener))
        conn.fresh = tasks[-1].uuid if tasks else None

    def cancel(self, uuid: str, reason: str) -> bool:
        return self.broker.backend.sync.run(protocol.cancel(uuid, reason, fused=True))

    def flush(self) -> None:
        self.broker.backend.sync.run(protocol.flush("A"))

    def close(self) -> None:
        self.broker.close()
