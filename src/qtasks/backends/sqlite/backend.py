"""The embedded SQLite backend: a file shared by the processes of one machine, or ``memory://``.

The database file defaults to ``.qtasks/<app name>.sqlite3`` under the working directory of the
process that creates the app, so a producer and a worker started from the same directory with the
same app name share it. ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` choose
another file. ``memory://[name]`` keeps the database in this process only (SQLite's ``memdb``),
for tests and single-process use.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from qtasks.backends.base import (
    AsyncTransport,
    Backend,
    DeadLetter,
    Delivery,
    NewTask,
    Outcome,
    SyncClient,
)
from qtasks.backends.sqlite import store
from qtasks.backends.sqlite.watcher import ChangeWatcher
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES
from qtasks.core.waiting import run_async, run_sync, wait_for_final
from qtasks.exceptions import BackendError

T = TypeVar("T")

_watchers: dict[str, ChangeWatcher] = {}
_watchers_lock = threading.Lock()


def default_database_path(name: str, cwd: Path | None = None) -> Path:
    """Where the default embedded database of app ``name`` lives."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "QueueTasks"
    return (cwd or Path.cwd()).resolve() / ".qtasks" / f"{safe}.sqlite3"


class SqliteBackend(Backend):
    """The embedded backend. ``max_deliveries`` and ``poll_interval_max`` come from the config."""

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "QueueTasks",
        max_deliveries: int = 5,
        poll_interval_max: float = 0.002,
        poll_interval_idle: float = 0.02,
    ) -> None:
        self.max_deliveries = max_deliveries
        self.app = name
        if url is None:
            self.path: Path | None = default_database_path(name)
            self.url = f"sqlite:///{self.path}"
        elif url.startswith("memory://"):
            key = url[len("memory://") :].strip("/") or name
            self.path = None
            self.url = url
            self._target = f"file:/qtasks-memory-{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}?vfs=memdb"
        elif url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :]).resolve()
            self.url = url
        else:
            raise BackendError(
                f"not an SQLite URL: {url!r}; write sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (three slashes, then the path)"
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

    def sync_client(self) -> SqliteSyncClient:
        return SqliteSyncClient(self)

    def async_transport(self) -> SqliteAsyncTransport:
        return SqliteAsyncTransport(self)


class SqliteSyncClient(SyncClient):
    """Blocking calls on a connection of the calling thread."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.backend.connect()
        return conn

    def enqueue(self, task: NewTask) -> None:
        store.enqueue(self.conn, self.backend.app, [task])
        self.backend.watcher.poke()

    def get(self, uuid: str) -> RecordRow | None:
        return store.get(self.conn, self.backend.app, uuid)

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        watcher = self.backend.watcher
        seen = watcher.generation

        def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = watcher.generation  # before reading, so no change slips between
            return store.get(self.conn, self.backend.app, key)

        return run_sync(wait_for_final(uuid, timeout, final), fetch,
                        lambda seconds: watcher.wait(seen, seconds))

    def flush(self) -> None:
        store.flush(self.conn, self.backend.app)
        self.backend.watcher.poke()

    def ping(self) -> bool:
        return store.ping(self.conn, self.backend.app)

    def cancel(self, uuid: str, reason: str) -> bool:
        done = store.cancel(self.conn, self.backend.app, uuid, reason)
        self.backend.watcher.poke()
        return done

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return store.dead_letters(self.conn, self.backend.app, limit)

    def stats(self) -> dict[str, Any]:
        return store.stats(self.conn, self.backend.app)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class SqliteAsyncTransport(AsyncTransport):
    """The same SQL, run on one database thread that owns this transport's connection."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.backend = backend
        self._conn: sqlite3.Connection | None = None
        self._seen = backend.watcher.generation
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qtasks-sqlite",
                                          initializer=self._open)

    def _open(self) -> None:
        self._conn = self.backend.connect()

    async def _call(self, fn: Any, *args: Any) -> Any:
        app = self.backend.app

        def run() -> Any:
            return fn(self._conn, app, *args)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def enqueue(self, task: NewTask) -> None:
        await self._call(store.enqueue, [task])
        self.backend.watcher.poke()

    async def get(self, uuid: str) -> RecordRow | None:
        return await self._call(store.get, uuid)

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        watcher = self.backend.watcher
        seen = watcher.generation

        async def fetch(key: str) -> RecordRow | None:
            nonlocal seen
            seen = watcher.generation  # before reading, so no change slips between
            return await self._call(store.get, key)

        return await run_async(wait_for_final(uuid, timeout, final), fetch,
                               lambda seconds: watcher.wait_async(seen, seconds))

    async def flush(self) -> None:
        await self._call(store.flush)
        self.backend.watcher.poke()

    async def ping(self) -> bool:
        return await self._call(store.ping)

    async def cancel(self, uuid: str, reason: str) -> bool:
        done = await self._call(store.cancel, uuid, reason)
        self.backend.watcher.poke()
        return done

    async def stats(self) -> dict[str, Any]:
        return await self._call(store.stats)

    async def next_due(self, queues: tuple[str, ...] = ("default",)) -> float | None:
        return await self._call(store.next_due, queues)

    async def claim(self, worker_id: str, limit: int, lease: float,
                    finished: list[Outcome] | tuple[()] = (),
                    queues: tuple[str, ...] = ("default",)) -> list[Delivery]:
        # Remember what we have seen before reading, so a change that lands while the claim
        # runs still wakes the next wait_for_work.
        self._seen = self.backend.watcher.generation
        claimed = await self._call(store.claim, worker_id, limit, lease,
                                   self.backend.max_deliveries, finished, queues)
        if finished:
            self.backend.watcher.poke()
        return claimed

    async def wait_for_work(self, timeout: float) -> None:
        await self.backend.watcher.wait_async(self._seen, timeout, eager=False)

    async def release(self, worker_id: str, deliveries: list[Delivery], counted: bool) -> None:
        await self._call(store.release, worker_id, deliveries, counted)
        self.backend.watcher.poke()

    async def heartbeat(self, worker_id: str, lease: float, info: dict[str, Any]) -> None:
        await self._call(store.heartbeat, worker_id, lease, info["concurrency"], info["started_at"])

    async def unregister(self, worker_id: str) -> None:
        await self._call(store.unregister, worker_id)

    async def delete_finished(self) -> int:
        return await self._call(store.delete_finished)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self._call(store.dead_letters, limit)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=False)
