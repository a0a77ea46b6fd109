"""``memory://``: a broker and a result store in this process, in plain Python.

A public testing tool, in the spirit of dramatiq's stub broker: the worker, the apps and the
test code of one process share it (``memory://name`` names a shared instance; the default name
is the app's). It implements the whole contract, so it is also the second, independent
implementation the conformance suite (tests/backends/) holds SQLite to. Nothing survives the
process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from qtasks.backends.base import (
    Backend,
    Broker,
    Cursor,
    DeadLetter,
    Delivery,
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
from qtasks.backends.memory.state import MemoryState
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES
from qtasks.core.waiting import run_async, run_sync, wait_for_final

_states: dict[str, MemoryState] = {}
_states_lock = threading.Lock()


def shared_state(key: str) -> MemoryState:
    """The state every ``memory://key`` backend of this process shares."""
    with _states_lock:
        state = _states.get(key)
        if state is None:
            state = _states[key] = MemoryState()
        return state


class MemoryBroker(Broker):
    """The async broker role. The state's methods never block; only ``fetch`` waits."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.state.enqueue(tasks)

    async def fetch(self, worker: str, queues: Sequence[str], limit: int, lease: float,
                    block: float = 0.0, start: int = 0) -> list[Delivery]:
        state = self.state
        deadline = time.monotonic() + block
        while True:
            seen = state.changed.generation
            taken = state.take(queues, limit, lease, start)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            wake = state.next_wake(queues)
            if wake is not None:
                remaining = min(remaining, max(0.0, wake - time.time()) + 0.001)
            await state.changed.wait_async(seen, remaining)

    async def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return self.state.start(deliveries)

    async def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return self.state.finish(deliveries)

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        self.state.release(deliveries, delay)

    async def extend(self, worker: str, deliveries: Sequence[Delivery],
                     lease: float) -> list[Delivery]:
        return self.state.extend(deliveries, lease)

    async def discard(self, uuid: str) -> bool:
        return self.state.discard(uuid)

    async def stats(self) -> QueueStats:
        return self.state.queue_stats()

    async def flush(self) -> None:
        self.state.flush_queue()

    async def close(self) -> None:
        """Nothing to release."""


class SyncMemoryBroker(SyncBroker):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.state.enqueue(tasks)

    def discard(self, uuid: str) -> bool:
        return self.state.discard(uuid)

    def stats(self) -> QueueStats:
        return self.state.queue_stats()

    def flush(self) -> None:
        self.state.flush_queue()

    def purge(self, queue: str, limit: int) -> list[str]:
        return self.state.purge(queue, limit)


class MemoryStore(ResultStore):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def create(self, tasks: Sequence[NewTask]) -> None:
        self.state.create(tasks)

    async def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        return self.state.mark_running(deliveries)

    async def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        self.state.mark_queued(deliveries)

    async def finish(self, outcomes: Sequence[Outcome]) -> FinishReport:
        return self.state.finish_records(outcomes)

    async def get(self, uuid: str) -> RecordRow | None:
        return self.state.get(uuid)

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        changed = self.state.changed
        seen = changed.generation

        async def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = changed.generation  # before reading, so no change slips between
            return self.state.get(key)

        return await run_async(wait_for_final(uuid, timeout, final), fetch,
                               lambda seconds: changed.wait_async(seen, seconds))

    async def cancel(self, uuid: str, reason: str) -> bool:
        return self.state.cancel(uuid, reason)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.state.dead_letters(limit)

    async def search(self, *, status: str | None = None, task_name: str | None = None,
                     limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return self.state.search(status, task_name, limit, before, cursor, queue)

    async def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        self.state.heartbeat(info, lease)

    async def unregister(self, worker: str) -> None:
        self.state.unregister(worker)

    async def delete_finished(self, older_than: float | None = None) -> int:
        return self.state.delete_finished(older_than)

    async def stats(self) -> StoreStats:
        return self.state.store_stats()

    async def flush(self) -> None:
        self.state.flush_store()


class SyncMemoryStore(SyncResultStore):
    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def create(self, tasks: Sequence[NewTask]) -> None:
        self.state.create(tasks)

    def get(self, uuid: str) -> RecordRow | None:
        return self.state.get(uuid)

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        changed = self.state.changed
        seen = changed.generation

        def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = changed.generation
            return self.state.get(key)

        return run_sync(wait_for_final(uuid, timeout, final), fetch,
                        lambda seconds: changed.wait(seen, seconds))

    def cancel(self, uuid: str, reason: str) -> bool:
        return self.state.cancel(uuid, reason)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.state.dead_letters(limit)

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        return self.state.delete_dead_letters(ids)

    def search(self, *, status: str | None = None, task_name: str | None = None,
               limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return self.state.search(status, task_name, limit, before, cursor, queue)

    def live_workers(self) -> int:
        return self.state.live_workers()

    def workers(self) -> list[WorkerRow]:
        return self.state.live_worker_rows()

    def stats(self) -> StoreStats:
        return self.state.store_stats()

    def flush(self) -> None:
        self.state.flush_store()


class MemoryBackend(Backend):
    """``memory://[name]``: queue and records in this process (tests, eager use)."""

    stores_records = True

    def __init__(self, url: str | None = None, *, name: str = "QueueTasks") -> None:
        self.url = url or "memory://"
        key = self.url.partition("://")[2].strip("/") or name
        self.key = key
        self.state = shared_state(key)

    def broker_roles(self) -> tuple[Broker, SyncBroker]:
        return MemoryBroker(self.state), SyncMemoryBroker(self.state)

    def store_roles(self) -> tuple[ResultStore, SyncResultStore]:
        return MemoryStore(self.state), SyncMemoryStore(self.state)

    def insert_raw(self, payload: str, queue: str = "default", priority: int = 0,
                uuid: str | None = None) -> None:
        """Queue a raw message, bypassing the codec (to test what a worker does with it)."""
        self.state.insert_raw(payload, queue, priority, uuid)

    def describe(self) -> str:
        return f"memory (in this process only: memory://{self.key})"
