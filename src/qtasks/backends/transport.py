"""A broker and a result store, put together in a safe order: what the worker and the apps use.

The order of the calls is what keeps a pair of separate services from losing work:

- enqueue: the record first, then the message, so a worker never meets a message whose
  record a producer cannot read;
- finish: the follow-ups (a retry's next attempt) are queued first, then the final records are
  written (fenced by the delivery's token in the store), then the messages are removed. A crash
  between two steps repeats work (the message comes back) but never loses it. The follow-up of
  an outcome the store rejects (its lease was lost) is cancelled before any worker starts it;
- start: the broker counts the delivery first, then the store marks the record running; a task
  cancelled meanwhile is finished at the broker without running.

A backend that plays both roles can do each of these in one transaction; it then subclasses
:class:`Transport` / :class:`Client` (see ``Backend.fused_transport``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from qtasks.backends.base import (
    BackendStats,
    Broker,
    DeadLetter,
    Delivery,
    Exchange,
    NewTask,
    Outcome,
    QueueStats,
    ResultStore,
    SyncBroker,
    SyncResultStore,
    WorkerInfo,
    WorkerRow,
)
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES

HOSTNAME = socket.gethostname()
T = TypeVar("T")

log = logging.getLogger("qtasks.backends")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def count_live(workers: Iterable[tuple[str, int]]) -> int:
    """Of the workers whose heartbeat holds, ``(hostname, pid)``, those alive: on this host,
    only those whose process exists (a worker killed with -9 leaves an unexpired heartbeat)."""
    return sum(1 for host, pid in workers if host != HOSTNAME or pid_alive(pid))


class Kept:
    """Calls that take messages, shielded: if the awaiting coroutine is cancelled, the call
    still completes and its answer waits in ``pending`` for the next caller's ``take``."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Any]] = []

    async def call(self, call: Awaitable[T]) -> T:
        # The call runs in a task of its own, which a cancelled caller does not cancel (as
        # with asyncio.shield). It hands its answer to ``told`` from inside its last step, so
        # the caller resumes one step of the event loop sooner than through shield's done
        # callback (about 6 us a step; an idle worker's claim makes three such calls).
        told: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future = asyncio.ensure_future(_telling(call, told))
        future.add_done_callback(_seen)
        try:
            return await told
        except asyncio.CancelledError:
            self.pending.append(future)
            raise

    async def take(self, waiting: bool = True) -> list[Any]:
        """The answers of the calls kept so far; with ``waiting`` false, only of those that
        have answered (the rest stay for a later call)."""
        if not waiting:
            done = [future for future in self.pending if future.done()]
            if not done:
                return []
            self.pending[:] = [future for future in self.pending if not future.done()]
            return _answers(done)
        return await take_pending(self.pending)


async def _telling(call: Awaitable[T], told: asyncio.Future[T]) -> T:
    """Await ``call``, and give its answer or error to ``told`` unless its caller has gone."""
    try:
        answer = await call
    except asyncio.CancelledError:
        if not told.done():
            told.cancel()
        raise
    except BaseException as exc:
        if not told.done():
            told.set_exception(exc)
        raise
    if not told.done():
        told.set_result(answer)
    return answer


def _seen(future: asyncio.Future[Any]) -> None:
    """A kept call's task failed: its caller was told, or ``take`` logs it; asyncio need not
    report it as never retrieved."""
    if not future.cancelled():
        future.exception()


def worker_info(worker_id: str, started_at: float, concurrency: int,
                queues: Sequence[str] = ("default",), running: int = 0,
                totals: tuple[int, int, float] = (0, 0, 0.0)) -> WorkerInfo:
    """``totals``: the worker's finished and failed tasks, and their run time, so far."""
    return WorkerInfo(id=worker_id, hostname=HOSTNAME, pid=os.getpid(), started_at=started_at,
                      concurrency=concurrency, queues=tuple(queues), running=running,
                      finished=totals[0], failed=totals[1], busy_seconds=totals[2])


class Transport:
    """The async side: a broker and a store, used by the worker and the async app."""

    def __init__(self, broker: Broker, store: ResultStore) -> None:
        self.broker = broker
        self.store = store
        self._unfinished = Kept()

    # -- producer -----------------------------------------------------------------------------

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self.store.create(tasks)
        await self.broker.enqueue(tasks)

    async def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """``enqueue``, by a caller that waits for these tasks next (``add_task(timeout=)``): a
        backend may prepare the wait in the same round trip."""
        await self.enqueue(tasks)

    async def enqueue_stream(self, tasks: Iterator[NewTask]) -> None:
        """``enqueue`` of tasks built as they are taken (``add_tasks``): a backend that sends
        a bulk enqueue in batches may send each one as soon as it is built, so that building
        the next overlaps writing this one. All are taken before this returns."""
        await self.enqueue(list(tasks))

    async def get(self, uuid: str) -> RecordRow | None:
        return await self.store.get(uuid)

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        return await self.store.wait(uuid, timeout, final)

    async def cancel(self, uuid: str, reason: str) -> bool:
        if not await self.store.cancel(uuid, reason):
            return False
        await self.broker.discard(uuid)  # if it cannot, the worker skips the cancelled task
        return True

    async def flush(self) -> None:
        await self.broker.flush()
        await self.store.flush()

    async def ping(self) -> bool:
        return (await self.store.stats()).workers > 0

    async def stats(self) -> BackendStats:
        return BackendStats.of(await self.broker.stats(), await self.store.stats())

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self.store.dead_letters(limit)

    async def search(self, **filters: Any) -> list[RecordRow]:
        return await self.store.search(**filters)

    async def delete_finished(self, older_than: float | None = None) -> int:
        return await self.store.delete_finished(older_than)

    # -- worker -------------------------------------------------------------------------------

    async def exchange(self, worker: str, queues: Sequence[str], *, limit: int, lease: float,
                       block: float = 0.0, finished: Sequence[Outcome] = (),
                       started: Sequence[Delivery] = (), start: int = 0) -> Exchange:
        """One worker round trip: record ``finished``, start ``started``, fetch up to ``limit``
        (waiting up to ``block`` seconds only when there is nothing to write).

        Cancelling it while it waits loses nothing; once messages are taken, the rest runs to
        the end and its answer is handed over by the next call.
        """
        result = Exchange()
        for earlier in await self._unfinished.take():  # calls cancelled after they took
            merge(result, earlier)
        if result.deliveries and not (finished or started):
            return result  # hand them over now: a later await could be cancelled with them
        limit, start = after_kept(result.deliveries, limit, start)
        if finished:
            await self._finish(finished, result)
        if started:
            await self._start(started, result)
        if limit > 0:
            wait = block if not (finished or started or result.deliveries) else 0.0
            fetched = await self.broker.fetch(worker, queues, limit, lease, wait, start)
            if fetched:
                merge(result, await self._unfinished.call(self._check_started(fetched)))
        return result

    async def _finish(self, finished: Sequence[Outcome], result: Exchange) -> None:
        follow_ups = [o.follow_up for o in finished if o.follow_up is not None]
        if follow_ups:
            await self.store.create(follow_ups)
            await self.broker.enqueue(follow_ups)
        report = await self.store.finish(finished)
        result.unstorable.extend(report.unstorable)
        kept = {id(o) for o, _ in report.unstorable}  # their messages stay: core stores another
        acks = [o.delivery for o in finished if id(o) not in kept and o.delivery.tag is not None]
        lost = {id(d) for d in await self.broker.finish(acks)}
        seen = {id(o) for o in report.rejected}
        result.rejected.extend(report.rejected)
        result.rejected.extend(o for o in finished if id(o.delivery) in lost and id(o) not in seen)
        for rejected in report.rejected:  # the attempt lost its lease: its retry must not run
            if rejected.follow_up is not None:
                await self.cancel(rejected.follow_up.uuid, SUPERSEDED)

    async def _start(self, started: Sequence[Delivery], result: Exchange) -> None:
        lost = {id(d) for d in await self.broker.start(started)}
        held = [d for d in started if id(d) not in lost]
        result.refused.extend(d for d in started if id(d) in lost)
        for d in held:
            d.started = True
        blocked = await self.store.mark_running(held) if held else set()
        if blocked:
            gone = [d for d in held if d.uuid in blocked]
            await self.broker.finish(gone)
            result.refused.extend(gone)

    async def _check_started(self, fetched: list[Delivery]) -> Exchange:
        """Deliveries the broker started on fetch: mark their records running."""
        result = Exchange(deliveries=list(fetched))
        auto = [d for d in fetched if d.started]
        blocked = await self.store.mark_running(auto) if auto else set()
        if blocked:
            gone = [d for d in auto if d.uuid in blocked]
            await self.broker.finish(gone)
            result.deliveries = [d for d in fetched if not (d.started and d.uuid in blocked)]
        return result

    async def heartbeat(self, info: WorkerInfo, deliveries: Sequence[Delivery],
                        lease: float) -> list[Delivery]:
        """Extend every lease this worker holds, in one call, and say it is alive. Returns the
        deliveries whose lease was lost."""
        lost = await self.broker.extend(info.id, deliveries, lease) if deliveries else []
        await self.store.heartbeat(info, lease)
        return lost

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        if deliveries:
            await self.store.mark_queued([d for d in deliveries if d.started])
            await self.broker.release(deliveries, delay)

    async def unregister(self, worker: str) -> None:
        await self.store.unregister(worker)

    async def close(self) -> None:
        await self.broker.close()
        if self.store is not self.broker:
            await self.store.close()


def after_kept(kept: Sequence[Delivery], limit: int, start: int) -> tuple[int, int]:
    """How many messages a round trip may still claim, and start, once ``kept`` (the
    deliveries of calls cancelled after they took messages, handed over with its answer) are
    counted: they fill part of the room the worker asked for. A message claimed now comes
    after a kept one in the queue's order, so while any kept delivery is not started, none
    claimed now is started either: the worker runs started deliveries first, and would
    otherwise run a later message (or a higher priority number) ahead of the kept one."""
    if not kept:
        return limit, start
    limit = max(0, limit - len(kept))
    if any(not d.started for d in kept):
        return limit, 0
    return limit, max(0, start - len(kept))


def merge(into: Exchange, other: Exchange) -> None:
    """Add ``other``'s answers to ``into``."""
    into.deliveries.extend(other.deliveries)
    into.refused.extend(other.refused)
    into.rejected.extend(other.rejected)
    into.unstorable.extend(other.unstorable)


async def take_pending(pending: list[Any]) -> list[Any]:
    """The results of ``pending`` (futures of calls that were cancelled after they had taken
    messages), removed from it only once all are in: cancelling this wait leaves them there for
    the next call, so no message they took is dropped."""
    if not pending:
        return []
    waiting = list(pending)
    await asyncio.wait(waiting)
    del pending[:len(waiting)]
    return _answers(waiting)


def _answers(futures: Iterable[asyncio.Future[Any]]) -> list[Any]:
    """The results of finished calls. One that failed has nothing to hand over (any message
    it had taken comes back when its lease runs out): it is logged, and the others' answers,
    which may hold messages, are kept."""
    answers = []
    for future in futures:
        if future.cancelled():
            log.warning("a kept round trip was cancelled; messages it took come back when "
                        "their lease runs out")
        elif (exc := future.exception()) is not None:
            log.warning("a kept round trip failed (%s); messages it took come back when their "
                        "lease runs out", exc)
        else:
            answers.append(future.result())
    return answers


SUPERSEDED = ("superseded: the attempt that queued this retry had lost its lease to another "
              "worker, whose outcome stands")


class Client:
    """The blocking side: what the sync app and the operator commands use."""

    def __init__(self, broker: SyncBroker, store: SyncResultStore) -> None:
        self.broker = broker
        self.store = store

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.store.create(tasks)
        self.broker.enqueue(tasks)

    def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """See :meth:`Transport.enqueue_watched`."""
        self.enqueue(tasks)

    def enqueue_stream(self, tasks: Iterator[NewTask]) -> None:
        """See :meth:`Transport.enqueue_stream`."""
        self.enqueue(list(tasks))

    def get(self, uuid: str) -> RecordRow | None:
        return self.store.get(uuid)

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        return self.store.wait(uuid, timeout, final)

    def cancel(self, uuid: str, reason: str) -> bool:
        if not self.store.cancel(uuid, reason):
            return False
        self.broker.discard(uuid)
        return True

    def flush(self) -> None:
        self.broker.flush()
        self.store.flush()

    def ping(self) -> bool:
        return self.store.live_workers() > 0

    def stats(self) -> BackendStats:
        return BackendStats.of(self.broker.stats(), self.store.stats())

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.store.dead_letters(limit)

    def search(self, **filters: Any) -> list[RecordRow]:
        return self.store.search(**filters)

    def purge(self, queue: str, limit: int, reason: str) -> list[str]:
        """Drop up to ``limit`` waiting messages of ``queue`` and cancel their records (with
        ``reason``), so that nobody waits on them; their uuids."""
        uuids = self.broker.purge(queue, limit)
        for uuid in uuids:
            self.store.cancel(uuid, reason)
        return uuids

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        return self.store.delete_dead_letters(ids)

    def workers(self) -> list[WorkerRow]:
        return self.store.workers()

    def queue_stats(self) -> QueueStats:
        """The queue's counts alone (waiting, delayed, claimed, per queue)."""
        return self.broker.stats()

    def dead_letter_count(self) -> int:
        return self.store.dead_letter_count()

    def close(self) -> None:
        self.broker.close()
        if self.store is not self.broker:
            self.store.close()
