"""The in-process queue and records: plain Python structures under one lock.

Every method is a short critical section and never blocks, so the sync and the async roles
(``backend.py``) call the same methods; only waiting differs, and that goes through
:class:`Notifier`, which wakes threads and event loops alike.

Ready messages sit in one heap per queue ordered by (priority, sequence); delayed ones in a
heap ordered by due time; leased ones in a heap ordered by lease deadline. Heaps are cleaned
lazily: an entry whose message moved on is skipped when it comes to the top.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qtasks.backends.base import (
    Cursor,
    DeadLetter,
    Delivery,
    FinishReport,
    NewTask,
    Outcome,
    QueueStats,
    StoreStats,
    WorkerInfo,
    WorkerRow,
)
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES


class Notifier:
    """A change counter that threads and event loops can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def poke(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, set()
        for loop, future in futures:
            loop.call_soon_threadsafe(_resolve, future)

    def wait(self, seen: int, timeout: float | None) -> None:
        """Block until the counter moves past ``seen`` or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen, timeout)

    async def wait_async(self, seen: int, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._cond:
            if self.generation != seen:
                return
            self._futures.add(entry)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as
            # the future completes, and the cancelled caller would then go on waiting.
            await asyncio.wait((future,), timeout=timeout)
        finally:
            with self._cond:
                self._futures.discard(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class _Message:
    id: int
    uuid: str | None
    queue: str
    priority: int
    payload: str
    eta: float
    seq: int
    deliveries: int = 0
    token: int = 0
    lease_until: float | None = None


_FINAL = FINAL_STATUSES


def _unstorable(o: Outcome) -> str | None:
    """Why a store could not hold this outcome: text that is not valid UTF-8 (a lone surrogate).

    Python strings could keep it here, but no store outside this process can (SQLite refuses
    it), so the outcome is reported unstorable, as there: a test sees what production would.
    """
    payload = o.delivery.payload
    for text in (o.task_name, o.args_json, o.kwargs_json, o.returning_json, o.traceback,
                 o.extra_json, o.dead_letter, payload if isinstance(payload, str) else None):
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return repr(exc)
    return None


class MemoryState:
    """One app's queue, records, dead letters and workers, shared by every role object."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = Notifier()
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.messages: dict[int, _Message] = {}
        self.by_uuid: dict[str, int] = {}
        self._ready: dict[str, list[tuple[int, int, int]]] = {}
        self._delayed: list[tuple[float, int]] = []
        self._leased: list[tuple[float, int, int]] = []  # (deadline, id, token)
        self.records: dict[str, dict[str, Any]] = {}
        self.holders: dict[str, Any] = {}
        self.letters: list[DeadLetter] = []
        self._letter_ids = itertools.count(1)
        self.workers: dict[str, tuple[WorkerInfo, float, float]] = {}  # info, until, beat

    # -- broker -------------------------------------------------------------------------------

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        with self.lock:
            for task in tasks:
                self._put(_Message(next(self._ids), task.uuid, task.queue, task.priority,
                                   task.envelope, task.eta or 0.0, 0))
        self.changed.poke()

    def insert_raw(self, payload: str, queue: str = "default", priority: int = 0,
                uuid: str | None = None) -> None:
        """Queue a message as it is, however malformed (tests of the worker's defences)."""
        with self.lock:
            self._put(_Message(next(self._ids), uuid, queue, priority, payload, 0.0, 0))
        self.changed.poke()

    def _put(self, msg: _Message) -> None:
        if not msg.seq:
            msg.seq = msg.id
        self.messages[msg.id] = msg
        if msg.uuid is not None:
            self.by_uuid[msg.uuid] = msg.id
        self._schedule(msg, time.time())

    def _schedule(self, msg: _Message, now: float) -> None:
        if msg.eta > now:
            heapq.heappush(self._delayed, (msg.eta, msg.id))
        else:
            heapq.heappush(self._ready.setdefault(msg.queue, []), (msg.priority, msg.seq, msg.id))

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, mid = heapq.heappop(self._delayed)
            msg = self.messages.get(mid)
            if msg is not None and msg.lease_until is None and msg.eta <= now:
                heapq.heappush(self._ready.setdefault(msg.queue, []),
                               (msg.priority, msg.seq, msg.id))
        while self._leased and self._leased[0][0] <= now:
            _, mid, token = heapq.heappop(self._leased)
            msg = self.messages.get(mid)
            if msg is not None and msg.token == token and msg.lease_until is not None \
                    and msg.lease_until <= now:
                msg.lease_until = None  # its worker is gone: fetchable again
                heapq.heappush(self._ready.setdefault(msg.queue, []),
                               (msg.priority, msg.seq, msg.id))

    def _valid_top(self, queue: str) -> tuple[int, int, int] | None:
        heap = self._ready.get(queue)
        while heap:
            prio, seq, mid = heap[0]
            msg = self.messages.get(mid)
            if msg is not None and msg.lease_until is None and msg.priority == prio \
                    and msg.seq == seq:
                return heap[0]
            heapq.heappop(heap)
        return None

    def take(self, queues: Sequence[str], limit: int, lease: float,
             start: int) -> list[Delivery]:
        now = time.time()
        out: list[Delivery] = []
        with self.lock:
            self._promote(now)
            while len(out) < limit:
                tops = [(top, q) for q in queues if (top := self._valid_top(q)) is not None]
                if not tops:
                    break
                _, queue = min(tops)
                _, _, mid = heapq.heappop(self._ready[queue])
                msg = self.messages[mid]
                msg.token = next(self._tokens)
                msg.lease_until = now + lease
                heapq.heappush(self._leased, (msg.lease_until, mid, msg.token))
                delivery = Delivery(tag=mid, uuid=msg.uuid, payload=msg.payload,
                                    deliveries=msg.deliveries, priority=msg.priority,
                                    queue=msg.queue, token=msg.token)
                if start > 0 and msg.deliveries == 0:
                    start -= 1
                    msg.deliveries += 1
                    delivery.started = True
                out.append(delivery)
        return out

    def next_wake(self, queues: Sequence[str]) -> float | None:
        """When a delayed message or a lease deadline next needs attention."""
        with self.lock:
            times = [t for t in (self._delayed[0][0] if self._delayed else None,
                                 self._leased[0][0] if self._leased else None) if t is not None]
        return min(times) if times else None

    def _current(self, d: Delivery) -> _Message | None:
        msg = self.messages.get(d.tag)
        if msg is None or msg.token != d.token or msg.lease_until is None:
            return None
        return msg

    def _live(self, d: Delivery, now: float) -> _Message | None:
        """The message of ``d`` if its lease is still its own and not run out (a task is
        started, or its lease extended, only under a live lease)."""
        msg = self._current(d)
        return msg if msg is not None and msg.lease_until >= now else None  # type: ignore[operator]

    def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Count each start under a live lease; return the others."""
        now = time.time()
        lost = []
        with self.lock:
            for d in deliveries:
                msg = self._live(d, now)
                if msg is None:
                    lost.append(d)
                else:
                    msg.deliveries += 1
        return lost

    def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        rejected = []
        with self.lock:
            for d in deliveries:
                msg = self.messages.get(d.tag)
                if msg is None or msg.token != d.token:
                    rejected.append(d)
                    continue
                self._drop(msg)
        if deliveries:
            self.changed.poke()
        return rejected

    def _drop(self, msg: _Message) -> None:
        del self.messages[msg.id]
        if msg.uuid is not None and self.by_uuid.get(msg.uuid) == msg.id:
            del self.by_uuid[msg.uuid]

    def release(self, deliveries: Sequence[Delivery], delay: float) -> None:
        now = time.time()
        with self.lock:
            for d in deliveries:
                msg = self._current(d)
                if msg is None:
                    continue
                msg.lease_until = None
                msg.token = next(self._tokens)  # the released delivery's token is void
                msg.eta = now + delay if delay > 0 else 0.0
                self._schedule(msg, now)
        self.changed.poke()

    def extend(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        now = time.time()
        lost = []
        with self.lock:
            for d in deliveries:
                msg = self._live(d, now)
                if msg is None:
                    lost.append(d)
                    continue
                msg.lease_until = now + lease
                heapq.heappush(self._leased, (msg.lease_until, msg.id, msg.token))
        return lost

    def discard(self, uuid: str) -> bool:
        with self.lock:
            mid = self.by_uuid.get(uuid)
            msg = self.messages.get(mid) if mid is not None else None
            if msg is None or msg.lease_until is not None:
                return False
            self._drop(msg)
            return True

    def purge(self, queue: str, limit: int) -> list[str]:
        gone: list[str] = []
        with self.lock:
            waiting = sorted((m for m in self.messages.values()
                              if m.queue == queue and m.lease_until is None),
                             key=lambda m: m.seq)
            for msg in waiting[:limit]:
                self._drop(msg)
                if msg.uuid is not None:
                    gone.append(msg.uuid)
        return gone

    def queue_stats(self) -> QueueStats:
        now = time.time()
        stats = QueueStats()
        with self.lock:
            for msg in self.messages.values():
                if msg.lease_until is not None and msg.lease_until > now:
                    stats.running += 1
                    continue
                stats.queued += 1
                if msg.eta > now:
                    stats.delayed += 1
                stats.by_queue[msg.queue] = stats.by_queue.get(msg.queue, 0) + 1
        stats.by_queue = dict(sorted(stats.by_queue.items()))
        return stats

    def flush_queue(self) -> None:
        with self.lock:
            self.messages.clear()
            self.by_uuid.clear()
            self._ready.clear()
            self._delayed.clear()
            self._leased.clear()
        self.changed.poke()

    # -- store --------------------------------------------------------------------------------

    def create(self, tasks: Sequence[NewTask]) -> None:
        with self.lock:
            for t in tasks:
                self.records[t.uuid] = {
                    "uuid": t.uuid, "task_name": t.task_name, "priority": t.priority,
                    "status": "new", "args": t.args_json, "kwargs": t.kwargs_json,
                    "created_at": t.created_at, "updated_at": t.created_at, "returning": None,
                    "traceback": None, "extra": t.extra_json, "queue": t.queue,
                }
        self.changed.poke()

    def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        blocked: set[str] = set()
        now = time.time()
        with self.lock:
            for d in deliveries:
                if d.uuid is None:
                    continue
                row = self.records.get(d.uuid)
                if row is None:
                    continue  # a message without a record: the worker's outcome creates it
                if row["status"] in _FINAL:
                    blocked.add(d.uuid)
                    continue
                self.holders[d.uuid] = (d.tag, d.token)
                if row["status"] == "new":
                    row["status"], row["updated_at"] = "process", now
        self.changed.poke()
        return blocked

    def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:
            for d in deliveries:
                if d.uuid is None:
                    continue
                row = self.records.get(d.uuid)
                if row is not None and row["status"] == "process" \
                        and self.holders.get(d.uuid) == (d.tag, d.token):
                    row["status"] = "new"
                    del self.holders[d.uuid]

    def finish_records(self, outcomes: Sequence[Outcome]) -> FinishReport:
        report = FinishReport()
        now = time.time()
        with self.lock:
            for o in outcomes:
                problem = _unstorable(o)
                if problem is not None:
                    report.unstorable.append((o, problem))
                    continue
                row = self.records.get(o.uuid)
                holder = self.holders.get(o.uuid)
                # only a started delivery is fenced by the holder (see the SQLite store)
                if row is not None and (row["status"] in _FINAL or (
                        o.delivery.started and holder is not None
                        and holder != (o.delivery.tag, o.delivery.token))):
                    report.rejected.append(o)
                    continue
                if row is None:
                    row = self.records[o.uuid] = {
                        "uuid": o.uuid, "task_name": o.task_name, "priority": o.priority,
                        "args": o.args_json or "[]", "kwargs": o.kwargs_json or "{}",
                        "created_at": o.created_at or now, "extra": None}
                row.update(status=o.status, returning=o.returning_json, traceback=o.traceback,
                           updated_at=now)
                extra_json = o.record_extra()
                if extra_json:
                    merged = json.loads(row["extra"]) if row.get("extra") else {}
                    merged.update(json.loads(extra_json))
                    row["extra"] = json.dumps(merged, ensure_ascii=False)
                self.holders.pop(o.uuid, None)
                if o.dead_letter:
                    payload = o.delivery.payload
                    self.letters.append(DeadLetter(
                        id=next(self._letter_ids), uuid=o.uuid, task_name=o.task_name,
                        reason=o.dead_letter,
                        payload=payload if isinstance(payload, str)
                        else payload.decode("utf-8", "replace"),
                        deliveries=o.delivery.deliveries, created_at=now))
        self.changed.poke()
        return report

    def get(self, uuid: str) -> RecordRow | None:
        with self.lock:
            row = self.records.get(uuid)
            return dict(row) if row is not None else None  # type: ignore[return-value]

    def cancel(self, uuid: str, reason: str) -> bool:
        with self.lock:
            row = self.records.get(uuid)
            if row is None or row["status"] != "new":
                return False
            extra = json.loads(row["extra"]) if row.get("extra") else {}
            extra["cancel_reason"] = reason
            row.update(status="cancel", updated_at=time.time(),
                       extra=json.dumps(extra, ensure_ascii=False))
        self.changed.poke()
        return True

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self.lock:
            return list(reversed(self.letters))[:limit]

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        wanted = set(ids)
        with self.lock:
            kept = [d for d in self.letters if d.id not in wanted]
            gone = len(self.letters) - len(kept)
            self.letters = kept
        return gone

    def search(self, status: str | None, task_name: str | None, limit: int,
               before: float | None, cursor: Cursor | None = None,
               queue: str | None = None) -> list[RecordRow]:
        with self.lock:
            rows = [dict(r) for r in self.records.values()
                    if (status is None or r["status"] == status)
                    and (task_name is None or r["task_name"] == task_name)
                    and (before is None or r["created_at"] < before)
                    and (cursor is None or (r["created_at"], r["uuid"]) < cursor)
                    and (queue is None or r.get("queue") == queue)]
        rows.sort(key=lambda r: (r["created_at"], r["uuid"]), reverse=True)
        return rows[:limit]  # type: ignore[return-value]

    def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        with self.lock:
            now = time.time()
            self.workers[info.id] = (info, now + lease, now)

    def unregister(self, worker: str) -> None:
        with self.lock:
            self.workers.pop(worker, None)

    def live_workers(self) -> int:
        now = time.time()
        with self.lock:
            return sum(1 for _, until, _ in self.workers.values() if until > now)

    def live_worker_rows(self) -> list[WorkerRow]:
        now = time.time()
        with self.lock:
            live = [(info, beat) for info, until, beat in self.workers.values() if until > now]
        return sorted((WorkerRow(id=i.id, hostname=i.hostname, pid=i.pid, started_at=i.started_at,
                                 heartbeat_at=beat, concurrency=i.concurrency, queues=i.queues,
                                 running=i.running, finished=i.finished, failed=i.failed,
                                 busy_seconds=i.busy_seconds) for i, beat in live),
                      key=lambda w: (w.started_at, w.id))

    def delete_finished(self, older_than: float | None) -> int:
        cutoff = time.time() - (older_than or 0.0)
        with self.lock:
            gone = [u for u, r in self.records.items()
                    if r["status"] in _FINAL and (older_than is None or r["updated_at"] < cutoff)]
            for uuid in gone:
                del self.records[uuid]
        return len(gone)

    def store_stats(self) -> StoreStats:
        return StoreStats(records=len(self.records), dead_letters=len(self.letters),
                          workers=self.live_workers())

    def flush_store(self) -> None:
        with self.lock:
            self.records.clear()
            self.holders.clear()
            self.letters.clear()
        self.changed.poke()
