"""The embedded SQLite backend: a file shared by the processes of one machine.

The database file defaults to ``.qtasks/<app name>.sqlite3`` under the working directory of the
process that creates the app, so a producer and a worker started from the same directory with the
same app name share it. ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` choose
another file; ``sqlite://:memory:`` keeps a database in this process only (SQLite's ``memdb``).

SQLite plays both roles. Alone, it does each worker round trip in one transaction (the fused
transport below); paired with another broker, its store role is used on its own.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
from qtasks.backends.sqlite import store
from qtasks.backends.sqlite.watcher import ChangeWatcher
from qtasks.backends.transport import Client, Kept, Transport, after_kept, merge
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES
from qtasks.core.waiting import run_async, run_sync, wait_for_final
from qtasks.exceptions import BackendConnectionError, BackendError

T = TypeVar("T")

_watchers: dict[str, ChangeWatcher] = {}
_watchers_lock = threading.Lock()


def default_database_path(name: str, cwd: Path | None = None) -> Path:
    """Where the default embedded database of app ``name`` lives."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "QueueTasks"
    return (cwd or Path.cwd()).resolve() / ".qtasks" / f"{safe}.sqlite3"


class SqliteBackend(Backend):
    """The embedded backend; the poll intervals come from its settings (``SqliteSettings``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "QueueTasks",
        poll_interval_max: float = 0.002,
        poll_interval_idle: float = 0.02,
    ) -> None:
        self.app = name
        if url is None:
            self.path: Path | None = default_database_path(name)
            self.url = f"sqlite:///{self.path}"
        elif url.startswith("sqlite://:memory:"):
            key = url[len("sqlite://:memory:") :].strip("/") or name
            self.path = None
            self.url = url
            self._target = f"file:/qtasks-memory-{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}?vfs=memdb"
        elif url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :]).resolve()
            self.url = url
        else:
            raise BackendError(
                f"not an SQLite URL: {url!r}; write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (three slashes, then the path), or "
                "sqlite://:memory:"
            )
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(f"cannot create the database folder {self.path.parent}: {exc}") from exc
            self._target = str(self.path)
        self._uri = self.path is None
        # The anchor keeps a memdb database alive and creates the schema once per process.
        self._anchor = self.connect()
        store.ensure_schema(self._anchor)
        with _watchers_lock:
            watcher = _watchers.get(self._target)
            if watcher is None:
                watcher = ChangeWatcher(self.connect, poll_interval_max, poll_interval_idle)
                _watchers[self._target] = watcher
        self.watcher = watcher

    def connect(self) -> sqlite3.Connection:
        return store.connect(self._target, self._uri)

    def describe(self) -> str:
        if self.path is None:
            return f"memory (in this process only: {self.url})"
        return f"sqlite file {self.path}"

    def broker_roles(self) -> tuple[Broker, SyncBroker]:
        return SqliteBroker(_Db(self)), SyncSqliteBroker(_Conn(self))

    def store_roles(self) -> tuple[ResultStore, SyncResultStore]:
        return SqliteStore(_Db(self)), SyncSqliteStore(_Conn(self))

    def fused_transport(self) -> SqliteTransport:
        db = _Db(self)
        return SqliteTransport(SqliteBroker(db), SqliteStore(db))

    def fused_client(self) -> SqliteClient:
        conn = _Conn(self)
        return SqliteClient(SyncSqliteBroker(conn), SyncSqliteStore(conn))

    def insert_raw(self, payload: str, queue: str = "default", priority: int = 0,
                   uuid: str | None = None) -> None:
        """Queue a raw message, bypassing the codec (to test what a worker does with it)."""
        conn = self.connect()
        try:
            store.insert_raw(conn, self.app, payload, queue, priority, uuid)
        finally:
            conn.close()


def _checked(fn: Any, conn: sqlite3.Connection, app: str, *args: Any) -> Any:
    """Run ``fn``; a busy, locked or unreachable database is a transient BackendConnectionError."""
    try:
        return fn(conn, app, *args)
    except sqlite3.OperationalError as exc:
        raise BackendConnectionError(f"the SQLite database is not usable right now: {exc}") from exc


class _Conn:
    """Blocking calls on a connection of the calling thread."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self._local = threading.local()

    def call(self, fn: Any, *args: Any) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.backend.connect()
        return _checked(fn, conn, self.backend.app, *args)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _Db:
    """The same SQL, run on one database thread that owns this side's connection.

    ``kept`` calls are those that take messages: if the awaiting coroutine is cancelled, the
    thread still finishes the transaction, and its answer waits in ``self.kept`` for the next
    call instead of being lost.
    """

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self.watcher = backend.watcher
        self._conn: sqlite3.Connection | None = None
        self.kept = Kept()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qtasks-sqlite",
                                          initializer=self._open)

    def _open(self) -> None:
        self._conn = self.backend.connect()

    def _submit(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        conn_owner, app = self, self.backend.app

        def run() -> Any:
            return _checked(fn, conn_owner._conn, app, *args)  # type: ignore[arg-type]

        return asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def call(self, fn: Any, *args: Any) -> Any:
        return await self._submit(fn, *args)

    async def call_kept(self, fn: Any, *args: Any) -> Any:
        return await self.kept.call(self._submit(fn, *args))

    async def take_kept(self) -> list[Any]:
        return await self.kept.take()

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=False)


async def _blocking(db: _Db, queues: Sequence[str], block: float, attempt: Any) -> Any:
    """Call ``attempt()`` until it gives something, waiting on the change watcher in between,
    for at most ``block`` seconds (and no longer than the next delayed task or lease)."""
    deadline = time.monotonic() + block
    watcher = db.watcher
    while True:
        seen = watcher.generation  # before the attempt, so a change during it still wakes us
        got = await attempt()
        remaining = deadline - time.monotonic()
        if got or remaining <= 0:
            return got
        wake = await db.call(store.next_wake, queues)
        if wake is not None:
            remaining = min(remaining, max(0.0, wake - time.time()) + 0.001)
        await watcher.wait_async(seen, remaining, eager=False)


class SqliteBroker(Broker):
    """The broker role on the async side."""

    def __init__(self, db: _Db) -> None:
        self.db = db

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self.db.call(store.enqueue_messages, tasks)
        self.db.watcher.poke()

    async def fetch(self, worker: str, queues: Sequence[str], limit: int, lease: float,
                    block: float = 0.0, start: int = 0) -> list[Delivery]:
        kept = [d for batch in await self.db.take_kept() for d in batch]
        if kept:
            return kept

        async def attempt() -> list[Delivery]:
            return await self.db.call_kept(store.claim, worker, queues, limit, lease, start)

        return await _blocking(self.db, queues, block, attempt)

    async def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return await self.db.call(store.start, deliveries)

    async def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        rejected = await self.db.call(store.finish_messages, deliveries)
        self.db.watcher.poke()
        return rejected

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        await self.db.call(store.release, deliveries, delay)
        self.db.watcher.poke()

    async def extend(self, worker: str, deliveries: Sequence[Delivery],
                     lease: float) -> list[Delivery]:
        return await self.db.call(store.extend, deliveries, lease)

    async def discard(self, uuid: str) -> bool:
        return await self.db.call(store.discard, uuid)

    async def stats(self) -> QueueStats:
        return await self.db.call(store.queue_stats)

    async def flush(self) -> None:
        await self.db.call(store.flush_queue)
        self.db.watcher.poke()

    async def close(self) -> None:
        await self.db.close()


class SqliteStore(ResultStore):
    """The result-store role on the async side."""

    def __init__(self, db: _Db) -> None:
        self.db = db

    async def create(self, tasks: Sequence[NewTask]) -> None:
        await self.db.call(store.create_records, tasks)
        self.db.watcher.poke()

    async def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        return await self.db.call(store.mark_running, deliveries)

    async def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        await self.db.call(store.mark_queued, deliveries)

    async def finish(self, outcomes: Sequence[Outcome]) -> FinishReport:
        report = await self.db.call(store.finish_records, outcomes)
        self.db.watcher.poke()
        return report

    async def get(self, uuid: str) -> RecordRow | None:
        return await self.db.call(store.get, uuid)

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        watcher = self.db.watcher
        seen = watcher.generation

        async def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = watcher.generation  # before reading, so no change slips between
            return await self.db.call(store.get, key)

        return await run_async(wait_for_final(uuid, timeout, final), fetch,
                               lambda seconds: watcher.wait_async(seen, seconds))

    async def cancel(self, uuid: str, reason: str) -> bool:
        done = await self.db.call(store.cancel_record, uuid, reason)
        self.db.watcher.poke()
        return done

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self.db.call(store.dead_letters, limit)

    async def search(self, *, status: str | None = None, task_name: str | None = None,
                     limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return await self.db.call(store.search, status, task_name, limit, before, cursor, queue)

    async def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        await self.db.call(store.heartbeat, info, lease)

    async def unregister(self, worker: str) -> None:
        await self.db.call(store.unregister, worker)

    async def delete_finished(self, older_than: float | None = None) -> int:
        return await self.db.call(store.delete_finished, older_than)

    async def stats(self) -> StoreStats:
        return await self.db.call(store.store_stats)

    async def flush(self) -> None:
        await self.db.call(store.flush_store)
        self.db.watcher.poke()

    async def close(self) -> None:
        await self.db.close()


class SyncSqliteBroker(SyncBroker):
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.conn.call(store.enqueue_messages, tasks)
        self.conn.backend.watcher.poke()

    def discard(self, uuid: str) -> bool:
        return self.conn.call(store.discard, uuid)

    def stats(self) -> QueueStats:
        return self.conn.call(store.queue_stats)

    def flush(self) -> None:
        self.conn.call(store.flush_queue)
        self.conn.backend.watcher.poke()

    def purge(self, queue: str, limit: int) -> list[str]:
        return self.conn.call(store.purge, queue, limit)

    def close(self) -> None:
        self.conn.close()


class SyncSqliteStore(SyncResultStore):
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def create(self, tasks: Sequence[NewTask]) -> None:
        self.conn.call(store.create_records, tasks)
        self.conn.backend.watcher.poke()

    def get(self, uuid: str) -> RecordRow | None:
        return self.conn.call(store.get, uuid)

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        watcher = self.conn.backend.watcher
        seen = watcher.generation

        def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = watcher.generation  # before reading, so no change slips between
            return self.conn.call(store.get, key)

        return run_sync(wait_for_final(uuid, timeout, final), fetch,
                        lambda seconds: watcher.wait(seen, seconds))

    def cancel(self, uuid: str, reason: str) -> bool:
        done = self.conn.call(store.cancel_record, uuid, reason)
        self.conn.backend.watcher.poke()
        return done

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.conn.call(store.dead_letters, limit)

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        return self.conn.call(store.delete_dead_letters, ids)

    def search(self, *, status: str | None = None, task_name: str | None = None,
               limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return self.conn.call(store.search, status, task_name, limit, before, cursor, queue)

    def live_workers(self) -> int:
        return self.conn.call(store.live_workers)

    def workers(self) -> list[WorkerRow]:
        return self.conn.call(store.workers)

    def dead_letter_count(self) -> int:
        return self.conn.call(store.dead_letter_count)

    def stats(self) -> StoreStats:
        return self.conn.call(store.store_stats)

    def flush(self) -> None:
        self.conn.call(store.flush_store)
        self.conn.backend.watcher.poke()

    def close(self) -> None:
        self.conn.close()


class SqliteTransport(Transport):
    """Both roles on one database thread: each worker round trip is one transaction."""

    broker: SqliteBroker
    store: SqliteStore

    def __init__(self, broker: SqliteBroker, store_: SqliteStore) -> None:
        super().__init__(broker, store_)
        self.db = broker.db

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self.db.call(store.enqueue, tasks)
        self.db.watcher.poke()

    async def cancel(self, uuid: str, reason: str) -> bool:
        done = await self.db.call(store.cancel, uuid, reason)
        self.db.watcher.poke()
        return done

    async def flush(self) -> None:
        await self.db.call(store.flush)
        self.db.watcher.poke()

    async def exchange(self, worker: str, queues: Sequence[str], *, limit: int, lease: float,
                       block: float = 0.0, finished: Sequence[Outcome] = (),
                       started: Sequence[Delivery] = (), start: int = 0) -> Exchange:
        result = Exchange()
        for earlier in await self.db.take_kept():
            merge(result, earlier)
        if result.deliveries and not (finished or started):
            return result  # hand them over now: a later await could be cancelled with them
        limit, start = after_kept(result.deliveries, limit, start)

        async def attempt() -> Exchange | None:
            got: Exchange = await self.db.call_kept(store.exchange, worker, queues, limit,
                                                    lease, finished, started, start)
            return got if (got.deliveries or finished or started) else None

        got = await _blocking(self.db, queues, 0.0 if finished or started else block, attempt)
        if finished or started:
            self.db.watcher.poke()
        if got is not None:
            merge(result, got)
        return result

    async def heartbeat(self, info: WorkerInfo, deliveries: Sequence[Delivery],
                        lease: float) -> list[Delivery]:
        return await self.db.call(store.fused_heartbeat, info, deliveries, lease)

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        if deliveries:
            await self.db.call(store.fused_release, deliveries, delay)
            self.db.watcher.poke()

    async def close(self) -> None:
        await self.db.close()


class SqliteClient(Client):
    """The blocking side with the fused enqueue and cancel."""

    broker: SyncSqliteBroker

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        conn = self.broker.conn
        conn.call(store.enqueue, tasks)
        conn.backend.watcher.poke()

    def cancel(self, uuid: str, reason: str) -> bool:
        conn = self.broker.conn
        done = conn.call(store.cancel, uuid, reason)
        conn.backend.watcher.poke()
        return done

    def flush(self) -> None:
        conn = self.broker.conn
        conn.call(store.flush)
        conn.backend.watcher.poke()

    def close(self) -> None:
        self.broker.conn.close()
