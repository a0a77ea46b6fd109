"""``postgresql://``: the database you already run as broker and result store.

The classes here pick a connection and run ``sql`` operations on it: one connection per thread
for the sync app, a few per event loop for the worker and the async app. Alone, PostgreSQL
plays both roles through the fused transport and client below (each worker round trip is one
statement); beside another broker or store, each role works on its own.

Enqueue in the caller's transaction: inside ``with enqueue_in(conn):`` (a psycopg connection,
blocking or asyncio, or a Django connection), ``add_task`` and ``add_tasks`` write with ``conn``,
in whatever transaction it has open: the task exists for workers only if that transaction
commits. In a Django project whose qtasks database is one of Django's, a sync ``add_task``
inside ``transaction.atomic()`` does this by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
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
from qtasks.backends.postgres import sql as q
from qtasks.backends.postgres.connection import AsyncDb, AsyncListener, SyncDb, parse_url
from qtasks.backends.transport import Client, Kept, Transport, after_kept, count_live, merge
from qtasks.core.record import RecordRow
from qtasks.core.status import FINAL_STATUSES
from qtasks.core.waiting import run_async, run_sync, wait_for_final
from qtasks.exceptions import BackendError

_STATUS = q.RECORD_COLUMNS.index("status")
log = logging.getLogger("qtasks.backends.postgres")

_caller: contextvars.ContextVar[Any] = contextvars.ContextVar("qtasks_pg_connection",
                                                               default=None)


@contextlib.contextmanager
def enqueue_in(connection: Any) -> Iterator[None]:
    """Within the block, PostgreSQL enqueues of this context write with ``connection``, in its
    open transaction (nothing is committed here). ``connection`` is a ``psycopg.Connection``
    (sync app), a ``psycopg.AsyncConnection`` (async app) or a Django connection."""
    token = _caller.set(connection)
    try:
        yield
    finally:
        _caller.reset(token)


def _django_connection(settings: Any) -> Any:
    """The Django connection in an ``atomic()`` block on the same database as ours, if any."""
    import sys

    if "django.db" not in sys.modules:
        return None
    from django.conf import settings as django_settings
    from django.db import connections

    if not django_settings.configured:
        return None
    for alias in connections:
        conn = connections[alias]
        if conn.vendor != "postgresql" or not conn.in_atomic_block:
            continue
        if _same_database(conn.settings_dict, settings.conninfo):
            return conn
    return None


def _same_database(django_db: dict[str, Any], conninfo: str) -> bool:
    from psycopg.conninfo import conninfo_to_dict

    ours = conninfo_to_dict(conninfo)

    def norm(host: Any) -> str:
        host = str(host or "localhost")
        return "localhost" if host in ("127.0.0.1", "::1", "localhost", "") else host

    users = (django_db.get("USER"), ours.get("user"))
    return (str(django_db.get("NAME") or "") == str(ours.get("dbname") or "")
            and norm(django_db.get("HOST")) == norm(ours.get("host"))
            and str(django_db.get("PORT") or "5432") == str(ours.get("port") or "5432")
            and (None in users or "" in users or users[0] == users[1]))


class _DjangoCursor:
    """A Django connection seen as the part of a psycopg connection ``SyncDb.run`` uses."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def cursor(self) -> Any:
        return _DjangoCursorWrapper(self.conn.cursor())


class _DjangoCursorWrapper:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, text: str, params: Any, prepare: bool | None = None) -> None:
        self._cursor.execute(text, params)  # Django's cursor decides about preparing

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchall(self) -> Any:
        return self._cursor.fetchall()


def _callers_sync(settings: Any, join_django: bool = True) -> Any:
    conn = _caller.get()
    if conn is None:
        conn = _django_connection(settings) if join_django else None
        return _DjangoCursor(conn) if conn is not None else None
    if hasattr(conn, "in_atomic_block"):  # a Django connection
        return _DjangoCursor(conn)
    if hasattr(conn, "__aenter__") and not hasattr(conn, "__enter__"):
        raise BackendError("enqueue_in() was given an asyncio connection in the sync app: give "
                           "it a psycopg.Connection")
    return conn


def _callers_async() -> Any:
    conn = _caller.get()
    if conn is not None and not hasattr(conn, "__aenter__"):
        raise BackendError("enqueue_in() was given a blocking connection in the async app: give "
                           "it a psycopg.AsyncConnection")
    return conn


class PostgresBackend(Backend):
    """A PostgreSQL URL for the app ``name``; see ``connection.Settings`` for its options."""

    stores_records = True

    def __init__(self, url: str, *, name: str = "QueueTasks") -> None:
        self.url = url
        self.app = name
        self.settings = parse_url(url)
        self.sql = self.settings.sql
        self.sync = _CheckedSync(SyncDb.shared(self.settings), self.settings)
        self.dbs = PerLoop(lambda: AsyncDb(self.settings, name), AsyncDb.abandon)
        self.paired_storage: Backend | None = None
        self.maintenance = _Maintenance(self)

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.settings.shown}>"

    def describe(self) -> str:
        return f"postgresql {self.settings.shown} (schema {self.settings.schema})"

    def broker_roles(self) -> tuple[Broker, SyncBroker]:
        return PostgresBroker(self), SyncPostgresBroker(self)

    def store_roles(self) -> tuple[ResultStore, SyncResultStore]:
        return PostgresStore(self), SyncPostgresStore(self)

    def fused_transport(self) -> PostgresTransport:
        return PostgresTransport(PostgresBroker(self), PostgresStore(self))

    def fused_client(self) -> PostgresClient:
        return PostgresClient(SyncPostgresBroker(self), SyncPostgresStore(self))

    def joins_django_transaction(self, waits: bool = False) -> bool:
        """Whether a blocking enqueue now would go through a Django connection in ``atomic()``
        (the Django integration then has no transaction to warn about). An enqueue that waits
        for its result (``waits``) does not join it."""
        return (not waits and _caller.get() is None
                and _django_connection(self.settings) is not None)

    def insert_raw(self, payload: str, queue: str = "default", priority: int = 0,
                   uuid: str | None = None) -> None:
        """Queue a raw message, bypassing the codec (to test what a worker does with it)."""
        task = NewTask(uuid=uuid or "", task_name="", priority=priority, args_json="[]",
                       kwargs_json="{}", created_at=time.time(), envelope=payload, queue=queue)
        self.sync.run(self.enqueue_op([task], records=False, messages=True))

    # -- operations used by several roles ----------------------------------------------------------

    def enqueue_op(self, tasks: Sequence[NewTask], *, records: bool, messages: bool,
                   watched: bool = False) -> q.Steps:
        if not tasks:
            return None
        yield (q.enqueue_sql(self.sql, records, messages, watched),
               q.task_params(self.app, tasks, time.time()))

    def run_op(self, name: str, **params: Any) -> q.Steps:
        """One statement of ``sql.statements``; returns its rows."""
        return (yield (q.statements(self.sql)[name], {"app": self.app, **params}))

    def watch_op(self, uuid: str) -> q.Steps:
        """The record, marked watched while it is not final (so its final write notifies)."""
        rows = yield from self.run_op("watch", uuid=uuid)
        if not rows:
            return None
        *row, marked = rows[0]
        if not marked and row[_STATUS] not in FINAL_STATUSES:
            # finished while the update waited for the row: that write may not have notified
            return (yield from self.get_op(uuid))
        return q.record(row)

    def get_op(self, uuid: str) -> q.Steps:
        rows = yield from self.run_op("get", uuid=uuid)
        return q.record(rows[0]) if rows else None

    def cancel_op(self, uuid: str, reason: str, fused: bool) -> q.Steps:
        rows = yield from self.run_op("cancel_fused" if fused else "cancel", uuid=uuid,
                                      reason=reason, now=time.time())
        return bool(rows[0][0])

    def search_op(self, status: str | None, task_name: str | None, limit: int,
                  before: float | None, cursor: Cursor | None = None,
                  queue: str | None = None) -> q.Steps:
        after_created, after_uuid = cursor if cursor is not None else (None, None)
        rows = yield (q.search_sql(self.sql, status, task_name, before, cursor is not None,
                                   queue is not None),
                      {"app": self.app, "status": status, "task_name": task_name,
                       "before": before, "limit": limit, "after_created": after_created,
                       "after_uuid": after_uuid, "queue": queue})
        return [q.record(r) for r in rows]

    def purge_op(self, queue: str, limit: int) -> q.Steps:
        rows = yield from self.run_op("purge", queue=queue, limit=limit)
        return [uuid for (uuid,) in rows if uuid is not None]

    def delete_dead_letters_op(self, ids: Sequence[Any]) -> q.Steps:
        rows = yield from self.run_op("delete_dead_letters", ids=[int(i) for i in ids])
        return len(rows)

    def dead_letters_op(self, limit: int) -> q.Steps:
        rows = yield from self.run_op("dead_letters", limit=limit)
        return [q.dead_letter(r) for r in rows]

    def dead_letter_count_op(self) -> q.Steps:
        return (yield from self.run_op("dead_letter_count"))[0][0]

    def workers_op(self) -> q.Steps:
        rows = yield from self.run_op("workers", now=time.time())
        return [w for w in map(q.worker_row, rows) if count_live([(w.hostname, w.pid)])]

    def live_op(self) -> q.Steps:
        rows = yield from self.run_op("live_workers", now=time.time())
        return count_live((host, pid) for host, pid in rows)

    def store_stats_op(self) -> q.Steps:
        row = (yield from self.run_op("store_stats"))[0]
        stats = q.store_stats(row)
        stats.workers = yield from self.live_op()
        return stats

    def queue_stats_op(self) -> q.Steps:
        return q.queue_stats((yield from self.run_op("queue_stats", now=time.time())))

    def flush_op(self, queue: bool, store: bool) -> q.Steps:
        if queue:
            yield from self.run_op("flush_queue")
        if store:
            yield from self.run_op("flush_records")
            yield from self.run_op("flush_dead_letters")

    def release_op(self, deliveries: Sequence[Delivery], delay: float, records: bool) -> q.Steps:
        if records:
            started = [d for d in deliveries if d.started and d.uuid is not None]
            if started:
                yield from self.run_op("mark_queued", m_uuid=[d.uuid for d in started],
                                       m_holder=[q.holder(d) for d in started])
        if deliveries:
            eta = time.time() + delay if delay > 0 else 0.0
            yield from self.run_op("release", state=q.DELAYED if delay > 0 else q.READY, eta=eta,
                                   **q.start_params(deliveries))

    def extend_op(self, deliveries: Sequence[Delivery], lease: float) -> q.Steps:
        if not deliveries:
            return []
        now = time.time()
        rows = yield from self.run_op("extend", until=now + lease, now=now,
                                      **q.start_params(deliveries))
        kept = set(rows)
        return [d for d in deliveries if (d.tag, d.token) not in kept]

    def heartbeat_op(self, info: WorkerInfo, lease: float) -> q.Steps:
        """Say the worker is alive; forget long-dead workers; expire old records, in slices."""
        now = time.time()
        params = q.heartbeat_params(self.app, info, lease, now)
        yield (q.statements(self.sql)["heartbeat"], params)
        yield (q.statements(self.sql)["forget_workers"], params)
        for name, ttl in (("expire_records", self.settings.result_ttl),
                          ("expire_dead_letters", self.settings.dead_letter_ttl)):
            if ttl <= 0:
                continue
            for _ in range(20):  # at most 100,000 a beat: the next beat goes on
                rows = yield (q.statements(self.sql)[name] + " RETURNING 1",
                              {"app": self.app, "cutoff": now - ttl, "limit": 5000})
                if len(rows) < 5000:
                    break

    # Vacuum. Every task leaves two or three dead rows in the queue table (claim, start,
    # delete) and, once expired, one in records. Autovacuum reclaims them only when it runs:
    # not at all where it is off, and at best once a minute (``autovacuum_naptime``) elsewhere,
    # while a busy worker leaves hundreds of thousands a minute; the heap then grows, since
    # only VACUUM tells the free-space map that pages have room. So workers run it themselves
    # when the statistics show a table with more dead rows than ``VACUUM_DEAD_ROWS`` and than
    # live ones: a cheap pass, as the live rows are few. ``SKIP_LOCKED``: one already running
    # (another worker's, autovacuum's) is enough.
    VACUUM_DEAD_ROWS = 20_000
    # Analyze. The planner's row counts come from the last VACUUM or ANALYZE. Where nothing
    # analyzes the tables (autovacuum off) they go stale: with ``records`` counted at 5 rows
    # while it held 11,000, the claim marked its task started by reading every record of the
    # app (7 ms a claim, growing with the records kept) instead of looking the one up by key.
    # So workers also ANALYZE a table once its changes since the last one exceed
    # ``ANALYZE_CHANGED_ROWS`` and a tenth of its rows: autovacuum's rule, with a higher floor.
    ANALYZE_CHANGED_ROWS = 1_000

    def maintain_op(self) -> q.Steps:
        """``VACUUM`` or ``ANALYZE`` the qtasks tables that need it; returns what it ran."""
        rows = yield (q.statements(self.sql)["dead_rows"], {"schema": self.settings.schema})
        done = []
        for table, dead, live, changed in rows:
            vacuum = dead > self.VACUUM_DEAD_ROWS and dead > live
            analyze = changed > self.ANALYZE_CHANGED_ROWS and changed > live / 10
            if vacuum or analyze:
                command = ("ANALYZE (SKIP_LOCKED)" if not vacuum else
                           "VACUUM (SKIP_LOCKED, ANALYZE)" if analyze else "VACUUM (SKIP_LOCKED)")
                yield (f"{command} {self.sql.s}.{table}", {})
                done.append(f"{command} {table}")
        return done

    def delete_finished_op(self, older_than: float | None) -> q.Steps:
        cutoff = time.time() - older_than if older_than is not None else time.time() + 1
        total = 0
        while True:
            rows = yield (q.statements(self.sql)["expire_records"] + " RETURNING 1",
                          {"app": self.app, "cutoff": cutoff, "limit": 5000})
            total += len(rows)
            if len(rows) < 5000:
                return total


class _CheckedSync:
    """The shared blocking connections, as one backend uses them: its schema checked once."""

    def __init__(self, db: SyncDb, settings: Any) -> None:
        self.db = db
        self.settings = settings
        self._checked = False
        self._local = db._local

    def run(self, steps: q.Steps, conn: Any = None) -> Any:
        if not self._checked:
            self.db.check(self.settings)
            self._checked = True
        return self.db.run(steps, conn)

    def listener(self) -> Any:
        return self.db.listener(self.settings.sql.done_channel)

    def close(self) -> None:
        self.db.close()


class _Maintenance:
    """Runs ``maintain_op`` now and then beside the worker's work: at each heartbeat, and after
    every ``EVERY`` finished tasks (a busy worker fills the tables faster than its heartbeat
    comes round). Never two at once; a missing privilege turns it off with one warning."""

    EVERY = 20_000

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.enabled = backend.settings.vacuum
        self.finished = 0
        self.task: asyncio.Task[None] | None = None

    def count(self, finished: int) -> None:
        self.finished += finished
        if self.finished >= self.EVERY:
            self.start()

    def start(self) -> None:
        if not self.enabled or (self.task is not None and not self.task.done()):
            return
        self.finished = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import psycopg

        try:
            await self.backend.dbs.get().run(self.backend.maintain_op())
        except psycopg.errors.InsufficientPrivilege as exc:
            self.enabled = False
            log.warning("cannot VACUUM the qtasks tables (%s): leaving them to autovacuum; "
                        "make the workers' user their owner, or add ?vacuum=0 to the URL", exc)
        except Exception:
            log.exception("VACUUM of the qtasks tables failed; trying again later")


# -- waiting for a change ---------------------------------------------------------------------------


class _Idle:
    """What the last claim of a set of queues saw, when it took fewer messages than it could:
    the ready rows were gone at its snapshot. With the listener's ``generation`` read before
    that claim was sent, a wait on the listener from that generation misses no task committed
    after the snapshot, so an idle worker may wait at once instead of claiming (and asking for
    the next due time) again first: two statements fewer between a task's end and the wait,
    and a task that arrives meanwhile is not missed by a claim whose snapshot came too early."""

    def __init__(self) -> None:
        self.empty: dict[tuple[str, ...], tuple[AsyncListener, int, float | None]] = {}

    def saw(self, queues: Sequence[str], listener: AsyncListener | None, generation: int,
            got: q.Claimed, limit: int) -> None:
        key = tuple(queues)
        if listener is not None and limit > 0 and len(got.deliveries) < limit:
            due = None if got.wake is None else time.monotonic() + max(0.0, got.wake)
            self.empty[key] = (listener, generation, due)
        else:
            self.empty.pop(key, None)

    def still_empty(self, queues: Sequence[str], listener: AsyncListener | None) -> bool:
        """Whether a claim now would find the queues as empty as the last one did: no notice
        since, and no delayed task or lease due. Then outcomes go out without a claim beside
        them (a statement that does less: with one task at a time, the next one is enqueued
        as this one ends, and a claim fused with its outcome nearly always has a snapshot
        from before it), and this state stays for the wait that follows."""
        found = self._usable(self.empty.get(tuple(queues)), listener)
        return found is not None and listener is not None and found[0] == listener.generation

    def known_empty(self, queues: Sequence[str],
                    listener: AsyncListener) -> tuple[int, float | None] | None:
        """``(generation, seconds to the next due time or None)`` to wait from, once."""
        return self._usable(self.empty.pop(tuple(queues), None), listener)

    @staticmethod
    def _usable(seen: tuple[AsyncListener, int, float | None] | None,
                listener: AsyncListener | None) -> tuple[int, float | None] | None:
        """What ``saw`` kept, if it still holds for ``listener``: ``(generation, seconds to
        the next due time or None)``."""
        if seen is None or listener is None or seen[0] is not listener or listener.broken:
            return None
        _, generation, due = seen
        if due is None:
            return generation, None
        left = due - time.monotonic()
        return (generation, left) if left > 0 else None


async def _blocking(db: AsyncDb, queues: Sequence[str], block: float,
                    attempt: Callable[[AsyncListener | None], Awaitable[tuple[Any, float | None]]],
                    idle: _Idle | None = None) -> Any:
    """Call ``attempt(listener)`` until it gives something, waiting for a wake notice in
    between, for at most ``block`` seconds (and no longer than the next delayed task or lease
    deadline that the attempt reported). With ``idle`` telling that the queues were empty at
    the last claim, wait first."""
    if block <= 0:
        return (await attempt(None))[0]
    deadline = time.monotonic() + block
    listener = await db.listener(db.settings.sql.wake_channel)
    known = idle.known_empty(queues, listener) if idle is not None else None
    while True:
        if known is not None:
            seen, wake = known
            known = None
        else:
            seen = listener.generation
            got, wake = await attempt(listener)
            if got:
                return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if wake is not None:
            remaining = min(remaining, max(0.0, wake) + 0.001)
        await listener.wait_change(seen, remaining)
        if listener.broken:
            listener = await db.listener(db.settings.sql.wake_channel)


# -- the roles --------------------------------------------------------------------------------------


class PostgresBroker(Broker):
    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.kept = Kept()

    def _db(self) -> AsyncDb:
        return self.backend.dbs.get()

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self._db().run(self.backend.enqueue_op(tasks, records=False, messages=True),
                             _callers_async())

    async def fetch(self, worker: str, queues: Sequence[str], limit: int, lease: float,
                    block: float = 0.0, start: int = 0) -> list[Delivery]:
        kept = [d for batch in await self.kept.take() for d in batch.deliveries]
        if kept:
            return kept
        db, backend = self._db(), self.backend

        async def attempt(_: AsyncListener | None) -> tuple[list[Delivery], float | None]:
            got: q.Claimed = await self.kept.call(db.run(q.exchange(
                backend.sql, backend.app, worker, queues, limit, lease, (), (), start,
                time.time(), fused=False)))
            return got.deliveries, got.wake

        return await _blocking(db, queues, block, attempt) or []

    async def start(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return await self._db().run(q.start_messages(self.backend.sql, self.backend.app,
                                                     deliveries, time.time()))

    async def finish(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not deliveries:
            return []
        return await self._db().run(q.finish_messages(self.backend.sql, deliveries))

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        await self._db().run(self.backend.release_op(deliveries, delay, records=False))

    async def extend(self, worker: str, deliveries: Sequence[Delivery],
                     lease: float) -> list[Delivery]:
        return await self._db().run(self.backend.extend_op(deliveries, lease))

    async def discard(self, uuid: str) -> bool:
        return bool(await self._db().run(_rowcount(self.backend.run_op("discard", uuid=uuid))))

    async def stats(self) -> QueueStats:
        return await self._db().run(self.backend.queue_stats_op())

    async def flush(self) -> None:
        await self._db().run(self.backend.flush_op(queue=True, store=False))

    async def close(self) -> None:
        await self.backend.dbs.close()


def _rowcount(steps: q.Steps) -> q.Steps:
    """``discard`` returns no rows: count them with RETURNING instead."""
    text, params = next(steps)
    rows = yield (text + " RETURNING 1", params)
    return len(rows)


class SyncPostgresBroker(SyncBroker):
    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        self.backend.sync.run(self.backend.enqueue_op(tasks, records=False, messages=True),
                              _callers_sync(self.backend.settings))

    def discard(self, uuid: str) -> bool:
        return bool(self.backend.sync.run(_rowcount(self.backend.run_op("discard", uuid=uuid))))

    def purge(self, queue: str, limit: int) -> list[str]:
        return self.backend.sync.run(self.backend.purge_op(queue, limit))

    def stats(self) -> QueueStats:
        return self.backend.sync.run(self.backend.queue_stats_op())

    def flush(self) -> None:
        self.backend.sync.run(self.backend.flush_op(queue=True, store=False))

    def close(self) -> None:
        self.backend.sync.close()


class PostgresStore(ResultStore):
    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    def _db(self) -> AsyncDb:
        return self.backend.dbs.get()

    async def create(self, tasks: Sequence[NewTask]) -> None:
        await self._db().run(self.backend.enqueue_op(tasks, records=True, messages=False),
                             _callers_async())

    async def mark_running(self, deliveries: Sequence[Delivery]) -> set[str]:
        held = [d for d in deliveries if d.uuid is not None]
        if not held:
            return set()
        rows = await self._db().run(self.backend.run_op(
            "mark_running", now=time.time(), m_uuid=[d.uuid for d in held],
            m_holder=[q.holder(d) for d in held]))
        return set(rows[0][0])

    async def mark_queued(self, deliveries: Sequence[Delivery]) -> None:
        await self._db().run(_mark_queued(self.backend, deliveries))

    async def finish(self, outcomes: Sequence[Outcome]) -> FinishReport:
        return await self._db().run(q.finish_records(self.backend.sql, self.backend.app,
                                                     outcomes, time.time()))

    async def get(self, uuid: str) -> RecordRow | None:
        return await self._db().run(self.backend.get_op(uuid))

    async def wait(self, uuid: str, timeout: float | None,
                   final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        db = self._db()
        listeners = [await db.listener(db.settings.sql.done_channel)]
        expected: list[tuple[str, asyncio.Future[None]]] = []

        async def fetch(key: str) -> RecordRow | None:
            for old in expected:
                listeners[0].forget(*old)
            if listeners[0].broken:  # its connection was lost: listen again, or pause spins
                listeners[0] = await db.listener(db.settings.sql.done_channel)
            expected[:] = [(key, listeners[0].expect(key))]  # before the read: none slips by
            if db.fresh == key:  # enqueued watched a moment ago: nothing to read yet
                db.fresh = None
                return {"uuid": key, "status": "new", "extra": None}
            return await db.run(self.backend.watch_op(key))

        async def pause(seconds: float) -> None:
            await asyncio.wait([expected[0][1]], timeout=seconds)

        try:
            return await run_async(wait_for_final(uuid, timeout, final), fetch, pause)
        finally:
            for old in expected:
                listeners[0].forget(*old)

    async def cancel(self, uuid: str, reason: str) -> bool:
        return await self._db().run(self.backend.cancel_op(uuid, reason, fused=False))

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self._db().run(self.backend.dead_letters_op(limit))

    async def search(self, *, status: str | None = None, task_name: str | None = None,
                     limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return await self._db().run(self.backend.search_op(status, task_name, limit, before, cursor, queue))

    async def heartbeat(self, info: WorkerInfo, lease: float) -> None:
        await self._db().run(self.backend.heartbeat_op(info, lease))
        self.backend.maintenance.start()

    async def unregister(self, worker: str) -> None:
        await self._db().run(self.backend.run_op("unregister", id=worker))

    async def delete_finished(self, older_than: float | None = None) -> int:
        return await self._db().run(self.backend.delete_finished_op(older_than))

    async def stats(self) -> StoreStats:
        return await self._db().run(self.backend.store_stats_op())

    async def flush(self) -> None:
        await self._db().run(self.backend.flush_op(queue=False, store=True))

    async def close(self) -> None:
        await self.backend.dbs.close()


def _mark_queued(backend: PostgresBackend, deliveries: Sequence[Delivery]) -> q.Steps:
    held = [d for d in deliveries if d.uuid is not None]
    if held:
        yield from backend.run_op("mark_queued", m_uuid=[d.uuid for d in held],
                                  m_holder=[q.holder(d) for d in held])


class SyncPostgresStore(SyncResultStore):
    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    def create(self, tasks: Sequence[NewTask]) -> None:
        self.backend.sync.run(self.backend.enqueue_op(tasks, records=True, messages=False),
                              _callers_sync(self.backend.settings))

    def get(self, uuid: str) -> RecordRow | None:
        return self.backend.sync.run(self.backend.get_op(uuid))

    def wait(self, uuid: str, timeout: float | None,
             final: frozenset[str] = FINAL_STATUSES) -> RecordRow | None:
        db = self.backend.sync
        listeners = [db.listener()]  # listening before the first read: no notice slips by
        prefix = f"{self.backend.app}|"
        current = [uuid]

        def fetch(key: str) -> RecordRow | None:
            current[0] = key
            if listeners[0].conn.closed:  # its connection was lost: listen again first
                listeners[0] = db.listener()
            if getattr(db._local, "fresh", None) == key:
                db._local.fresh = None
                return {"uuid": key, "status": "new", "extra": None}
            return db.run(self.backend.watch_op(key))

        channel = self.backend.sql.done_channel

        def pause(seconds: float) -> None:
            listeners[0].wait(channel, prefix + current[0], seconds)

        try:
            return run_sync(wait_for_final(uuid, timeout, final), fetch, pause)
        finally:
            listeners[0].unlisten()

    def cancel(self, uuid: str, reason: str) -> bool:
        return self.backend.sync.run(self.backend.cancel_op(uuid, reason, fused=False))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.backend.sync.run(self.backend.dead_letters_op(limit))

    def delete_dead_letters(self, ids: Sequence[Any]) -> int:
        return self.backend.sync.run(self.backend.delete_dead_letters_op(ids))

    def search(self, *, status: str | None = None, task_name: str | None = None,
               limit: int = 100, before: float | None = None,
                     cursor: Cursor | None = None, queue: str | None = None) -> list[RecordRow]:
        return self.backend.sync.run(self.backend.search_op(status, task_name, limit, before, cursor, queue))

    def live_workers(self) -> int:
        return self.backend.sync.run(self.backend.live_op())

    def workers(self) -> list[WorkerRow]:
        return self.backend.sync.run(self.backend.workers_op())

    def dead_letter_count(self) -> int:
        return self.backend.sync.run(self.backend.dead_letter_count_op())

    def stats(self) -> StoreStats:
        return self.backend.sync.run(self.backend.store_stats_op())

    def flush(self) -> None:
        self.backend.sync.run(self.backend.flush_op(queue=False, store=True))

    def close(self) -> None:
        self.backend.sync.close()


# -- both roles, one statement per round trip -------------------------------------------------------


class PostgresTransport(Transport):
    """PostgreSQL as broker and store: enqueue, each worker round trip and cancel are one
    statement each (release is two: the records handed back, then their messages)."""

    broker: PostgresBroker
    store: PostgresStore

    def __init__(self, broker: PostgresBroker, store: PostgresStore) -> None:
        super().__init__(broker, store)
        self.backend = broker.backend
        self.kept = broker.kept
        self.idle = _Idle()

    def _db(self) -> AsyncDb:
        return self.backend.dbs.get()

    async def enqueue(self, tasks: Sequence[NewTask]) -> None:
        await self._db().run(self.backend.enqueue_op(tasks, records=True, messages=True),
                             _callers_async())

    async def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """Enqueue with the records marked watched, listening first: the wait that follows
        reads nothing until the final write's notice."""
        db = self._db()
        conn = _callers_async()
        if conn is not None:  # the caller's transaction: the record is not visible yet
            await self.enqueue(tasks)
            return
        await db.listener(db.settings.sql.done_channel)
        await db.run(self.backend.enqueue_op(tasks, records=True, messages=True, watched=True))
        db.fresh = tasks[-1].uuid if tasks else None

    async def cancel(self, uuid: str, reason: str) -> bool:
        return await self._db().run(self.backend.cancel_op(uuid, reason, fused=True))

    async def flush(self) -> None:
        await self._db().run(self.backend.flush_op(queue=True, store=True))

    async def exchange(self, worker: str, queues: Sequence[str], *, limit: int, lease: float,
                       block: float = 0.0, finished: Sequence[Outcome] = (),
                       started: Sequence[Delivery] = (), start: int = 0) -> Exchange:
        result = Exchange()
        for earlier in await self.kept.take():
            merge(result, earlier)
        if result.deliveries and not (finished or started):
            return result  # hand them over now: a later await could be cancelled with them
        limit, start = after_kept(result.deliveries, limit, start)
        db, backend = self._db(), self.backend
        outcomes: list[Sequence[Outcome]] = [finished]
        starts: list[Sequence[Delivery]] = [started]

        async def attempt(listener: AsyncListener | None) -> tuple[Exchange | None, float | None]:
            wrote = bool(outcomes[0] or starts[0])
            listener = listener or db.listening(db.settings.sql.wake_channel)
            generation = listener.generation if listener is not None else 0
            alone = (bool(outcomes[0]) and not starts[0]
                     and self.idle.still_empty(queues, listener))
            got: q.Claimed = await self.kept.call(db.run(q.exchange(
                backend.sql, backend.app, worker, queues, 0 if alone else limit, lease,
                outcomes[0], starts[0], start, time.time())))
            outcomes[0], starts[0] = (), ()  # written once; a further attempt only fetches
            if not alone:
                self.idle.saw(queues, listener, generation, got, limit)
            return (got if (got.deliveries or wrote) else None), got.wake

        got = await _blocking(db, queues, 0.0 if finished or started else block, attempt,
                              self.idle)
        if got is not None:
            merge(result, got)
        if finished:
            backend.maintenance.count(len(finished))
        return result

    async def heartbeat(self, info: WorkerInfo, deliveries: Sequence[Delivery],
                        lease: float) -> list[Delivery]:
        db = self._db()
        lost = await db.run(self.backend.extend_op(deliveries, lease)) if deliveries else []
        await db.run(self.backend.heartbeat_op(info, lease))
        self.backend.maintenance.start()
        return lost

    async def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        if deliveries:
            await self._db().run(self.backend.release_op(deliveries, delay, records=True))

    async def close(self) -> None:
        await self.backend.dbs.close()


class PostgresClient(Client):
    """The blocking side with the fused enqueue and cancel."""

    broker: SyncPostgresBroker

    def enqueue(self, tasks: Sequence[NewTask]) -> None:
        backend = self.broker.backend
        backend.sync.run(backend.enqueue_op(tasks, records=True, messages=True),
                         _callers_sync(backend.settings))

    def enqueue_watched(self, tasks: Sequence[NewTask]) -> None:
        """See :meth:`PostgresTransport.enqueue_watched`."""
        backend = self.broker.backend
        # add_task(timeout=...) inside atomic(): joining the transaction would leave nothing
        # to wait for until it commits, so Django's is joined only when asked (enqueue_in)
        conn = _callers_sync(backend.settings, join_django=False)
        if conn is not None:
            backend.sync.run(backend.enqueue_op(tasks, records=True, messages=True), conn)
            return
        backend.sync.listener()
        backend.sync.run(backend.enqueue_op(tasks, records=True, messages=True, watched=True))
        backend.sync._local.fresh = tasks[-1].uuid if tasks else None

    def cancel(self, uuid: str, reason: str) -> bool:
        backend = self.broker.backend
        return backend.sync.run(backend.cancel_op(uuid, reason, fused=True))

    def flush(self) -> None:
        backend = self.broker.backend
        backend.sync.run(backend.flush_op(queue=True, store=True))

    def close(self) -> None:
        self.broker.close()
