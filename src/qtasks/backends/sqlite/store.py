"""SQL for the embedded backend, run on one ``sqlite3`` connection by whoever owns it.

The same functions serve the blocking side (called directly, one connection per thread) and the
async side (called on its single database thread). They come in three groups: the broker role
(the ``queue`` table), the result-store role (``records``, ``dead_letters``, ``workers``), and
the fused operations that do both in one transaction when SQLite plays both roles.

Claiming is one ``BEGIN IMMEDIATE`` transaction: SQLite has one writer at a time, so two workers
never lease the same row. Each claim bumps the row's ``token``; every later change to the row
names the token it was given, so a worker whose lease ran out and was claimed again by another
changes nothing (fencing). ``deliveries`` counts the claims that *started*.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from qtasks.backends.base import (
    Cursor,
    DeadLetter,
    Delivery,
    Exchange,
    FinishReport,
    NewTask,
    Outcome,
    QueueStats,
    StoreStats,
    WorkerInfo,
    WorkerRow,
)
from qtasks.backends.transport import count_live
from qtasks.core.record import RecordRow
from qtasks.exceptions import BackendError

SCHEMA_VERSION = "5"

T = TypeVar("T")

# Several apps may share one database file: every row carries the name of its app, and every
# statement below is scoped to one app.

# ``records`` is a rowid table with a unique uuid, not keyed by uuid itself: the records of tasks
# enqueued together then sit on the same pages, so a worker round trip that marks and finishes
# a batch of them rewrites a page or two instead of one page per (random) uuid.
RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    task_name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    "returning" TEXT,
    traceback TEXT,
    extra TEXT,
    holder TEXT,
    queue TEXT
)"""

# The search pages through records newest first, by keyset on (created_at, uuid), so both
# orderings are indexed to the end: a page reads ``limit`` index entries, never a sort.
# Neither column ever changes, so the indexes cost an insert each and nothing on updates.
RECORD_INDEXES = (
    "CREATE INDEX IF NOT EXISTS records_created ON records (app, created_at, uuid)",
    "CREATE INDEX IF NOT EXISTS records_name ON records (app, task_name, created_at, uuid)",
)

SCHEMA = RECORDS_TABLE.format(name="records") + """;
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    uuid TEXT,
    queue TEXT NOT NULL DEFAULT 'default',
    priority INTEGER NOT NULL DEFAULT 0,
    eta REAL NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    worker TEXT,
    token INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (app, queue, priority, id);
CREATE INDEX IF NOT EXISTS queue_lease ON queue (app, lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_delayed ON queue (app, eta) WHERE eta > 0;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    app TEXT NOT NULL,
    uuid TEXT,
    task_name TEXT,
    reason TEXT NOT NULL,
    payload TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    concurrency INTEGER NOT NULL,
    queues TEXT NOT NULL DEFAULT 'default',
    running INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    busy_seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + "".join(f"{index};\n" for index in RECORD_INDEXES)

_FINAL = "('success', 'error', 'cancel')"
_RECORD_COLUMNS = (
    "uuid, task_name, priority, status, args, kwargs, created_at, updated_at, "
    "\"returning\", traceback, extra"
)
_READ_COLUMNS = _RECORD_COLUMNS + ", queue"  # what a RecordRow holds (inserts name their own)
_READY = "app = :app AND {queues} AND eta <= :now AND (lease_until IS NULL OR lease_until < :now)"


def _in_queues(queues: Sequence[str], params: dict[str, object]) -> str:
    """``queue IN (:q0, ...)``, the names put into ``params``."""
    params.update({f"q{i}": queue for i, queue in enumerate(queues)})
    return f"queue IN ({', '.join(f':q{i}' for i in range(len(queues)))})"


def _ready(queues: Sequence[str], params: dict[str, object]) -> str:
    """The condition of a message a worker of ``queues`` may claim now."""
    return _READY.format(queues=_in_queues(queues, params))


# Batches: one statement per step of a worker round trip, whatever the number of rows. Every
# statement is a trip through the sqlite3 module and SQLite's VM, and the database thread lets
# go of the GIL and takes it back around each step (``executemany`` steps once per row). The
# rows of a batch are passed as a ``VALUES`` list joined against the table. A statement takes at
# most ``_ROWS`` rows: with the widest row (12 values) that stays under 999 host parameters, the
# smallest limit an SQLite build may have.
_ROWS = 64


def _batches(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i:i + _ROWS] for i in range(0, len(items), _ROWS)]


@functools.lru_cache(maxsize=512)
def _values(rows: int, width: int) -> str:
    """``(?, ?), (?, ?), ...``: ``rows`` rows of ``width`` parameters."""
    row = f"({', '.join('?' * width)})"
    return ", ".join([row] * rows)


def _flat(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    return [value for row in rows for value in row]


def connect(target: str, uri: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with WAL for files."""
    # The batched statements below differ by their number of rows: room for all of them.
    conn = sqlite3.connect(target, uri=uri, timeout=60.0, isolation_level=None,
                           check_same_thread=False, cached_statements=512)
    conn.row_factory = sqlite3.Row
    if not uri:
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    """WAL is a property of the file, set once. Setting it while another connection opens the
    same new file (two threads creating the backend at once) fails with "database is locked"
    at once, since this pragma ignores the busy timeout: try again for a few seconds."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables on first use; refuse a file written with another schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        found = None
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = row[0] if row else None
        if found is None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        else:
            found = _upgrade(conn, found)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found is not None and found != SCHEMA_VERSION:
        raise BackendError(
            f"this database was written by a qtasks release with schema {found}, this release "
            f"reads schema {SCHEMA_VERSION}; use a new database file or the matching release"
        )


def _upgrade(conn: sqlite3.Connection, found: str) -> str:
    """Inside the schema transaction: bring a file of an earlier schema to this one; return
    the version it now has (unchanged if it is not one this release knows how to upgrade)."""
    if found == "2":  # the release before fencing tokens: add the two columns
        conn.execute("ALTER TABLE queue ADD COLUMN token INTEGER NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE records ADD COLUMN holder TEXT")
        found = "3"
    if found == "3":  # records keyed by uuid (WITHOUT ROWID): copied into a rowid table
        columns = f"app, {_RECORD_COLUMNS}, holder"
        conn.execute(RECORDS_TABLE.format(name="records_v4"))
        conn.execute(f"INSERT INTO records_v4 ({columns}) SELECT {columns} FROM records "
                     "ORDER BY created_at")
        conn.execute("DROP TABLE records")
        conn.execute("ALTER TABLE records_v4 RENAME TO records")
        # no statement looks messages up by worker any more (leases are fenced by token)
        conn.execute("DROP INDEX IF EXISTS queue_worker")
        found = "4"
    if found == "4":  # keyset search (indexes end in uuid), workers report queues and load
        conn.execute("DROP INDEX IF EXISTS records_created")
        for index in RECORD_INDEXES:
            conn.execute(index)
        conn.execute("ALTER TABLE workers ADD COLUMN queues TEXT NOT NULL DEFAULT 'default'")
        records = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
        if "queue" not in records:  # a file copied by the step above has it already
            conn.execute("ALTER TABLE records ADD COLUMN queue TEXT")
        for column in ("running INTEGER", "finished INTEGER", "failed INTEGER",
                       "busy_seconds REAL"):
            conn.execute(f"ALTER TABLE workers ADD COLUMN {column} NOT NULL DEFAULT 0")
        found = "5"
    if found == SCHEMA_VERSION:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
    return found


class _Transaction:
    """``with _Transaction(conn):`` -- BEGIN IMMEDIATE, COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _holder(d: Delivery) -> str:
    return f"{d.tag}:{d.token}"


# -- the broker role: the queue table -------------------------------------------------------------


def _insert_messages(conn: sqlite3.Connection, app: str, tasks: Sequence[NewTask]) -> None:
    conn.executemany(
        "INSERT INTO queue (app, uuid, queue, priority, eta, payload) VALUES (?, ?, ?, ?, ?, ?)",
        [(app, t.uuid, t.queue, t.priority, t.eta or 0.0, t.envelope) for t in tasks],
    )


def enqueue_messages(conn: sqlite3.Connection, app: str, tasks: Sequence[NewTask]) -> None:
    with _Transaction(conn):
        _insert_messages(conn, app, tasks)


def insert_raw(conn: sqlite3.Connection, app: str, payload: str, queue: str = "default",
               priority: int = 0, uuid: str | None = None) -> None:
    """A message as it is, however malformed (tests of the worker's defences)."""
    with _Transaction(conn):
        conn.execute("INSERT INTO queue (app, uuid, queue, priority, payload) "
                     "VALUES (?, ?, ?, ?, ?)", (app, uuid, queue, priority, payload))


def ready_now(conn: sqlite3.Connection, app: str, queues: Sequence[str]) -> bool:
    """A read, so that an idle worker woken by an unrelated commit takes no write lock."""
    params: dict[str, object] = {"now": time.time(), "app": app}
    return conn.execute(f"SELECT 1 FROM queue WHERE {_ready(queues, params)} LIMIT 1",
                        params).fetchone() is not None


def next_wake(conn: sqlite3.Connection, app: str, queues: Sequence[str]) -> float | None:
    """When a delayed message of ``queues`` becomes due, or a lease in them runs out."""
    params: dict[str, object] = {"app": app, "now": time.time()}
    row = conn.execute(
        "SELECT min(CASE WHEN lease_until IS NULL THEN eta ELSE lease_until END) FROM queue "
        f"WHERE app = :app AND {_in_queues(queues, params)} "
        "AND (eta > :now OR lease_until IS NOT NULL)", params,
    ).fetchone()
    return row[0]


def _claim(conn: sqlite3.Connection, app: str, worker: str, queues: Sequence[str], limit: int,
           lease: float, start: int, now: float) -> list[Delivery]:
    """Inside a transaction: lease up to ``limit`` ready rows; start the first ``start`` fresh
    ones."""
    params: dict[str, object] = {"now": now, "app": app}
    rows = conn.execute(
        "UPDATE queue SET lease_until = :until, worker = :worker, token = token + 1 "
        f"WHERE id IN (SELECT id FROM queue WHERE {_ready(queues, params)} "
        "ORDER BY priority, id LIMIT :n) "
        "RETURNING id, uuid, payload, deliveries, priority, queue, token",
        {**params, "until": now + lease, "worker": worker, "n": limit},
    ).fetchall()
    rows.sort(key=lambda r: (r["priority"], r["id"]))
    out = [Delivery(r["id"], r["uuid"], r["payload"], r["deliveries"], r["priority"],
                    r["queue"], r["token"]) for r in rows]
    fresh = [d for d in out if d.deliveries == 0][:start]
    for batch in _batches(fresh):
        conn.execute("UPDATE queue SET deliveries = deliveries + 1 "
                     f"WHERE id IN ({', '.join('?' * len(batch))})", [d.tag for d in batch])
    for d in fresh:
        d.started = True
    return out


def claim(conn: sqlite3.Connection, app: str, worker: str, queues: Sequence[str], limit: int,
          lease: float, start: int) -> list[Delivery]:
    """The broker role's fetch (without waiting): one transaction, taken only if work is ready."""
    if limit <= 0 or not ready_now(conn, app, queues):
        return []
    with _Transaction(conn):
        return _claim(conn, app, worker, queues, limit, lease, start, time.time())


# A delivery's lease is live: its token, and a deadline not passed. A task is started, or its
# lease extended, only under a live lease: one that expired may be claimed by another worker
# in the same transaction (the claim takes expired leases), and both would run it.
_HELD = "id = ? AND token = ? AND lease_until >= ?"


def _start(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Count the start of each delivery whose lease is still its own and live; return the
    others."""
    counted, now = 0, time.time()
    if len({d.tag for d in deliveries}) == len(deliveries):
        for batch in _batches(deliveries):
            counted += conn.execute(
                "UPDATE queue SET deliveries = deliveries + 1 "
                f"FROM (VALUES {_values(len(batch), 2)}) AS v "
                "WHERE queue.id = v.column1 AND queue.token = v.column2 "
                "AND queue.lease_until >= ?",
                (*_flat([(d.tag, d.token) for d in batch]), now)).rowcount
    else:  # one message twice: each start counts, as one statement per delivery does
        counted = conn.executemany(f"UPDATE queue SET deliveries = deliveries + 1 WHERE {_HELD}",
                                   [(d.tag, d.token, now) for d in deliveries]).rowcount
    if counted == len(deliveries):
        for d in deliveries:
            d.started = True
        return []
    # Some lease was lost. The update changed neither token nor lease, so the rows it counted
    # are exactly those that still match.
    lost = []
    for d in deliveries:
        if conn.execute(f"SELECT 1 FROM queue WHERE {_HELD}", (d.tag, d.token, now)).fetchone():
            d.started = True
        else:
            lost.append(d)
    return lost


def start(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery]) -> list[Delivery]:
    with _Transaction(conn):
        return _start(conn, deliveries)


_DELETE_HELD = "DELETE FROM queue WHERE id = ? AND token = ?"


def _delete_held(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> int:
    """Delete the messages that still carry the delivery's token; how many were."""
    deleted = 0
    for batch in _batches(deliveries):
        deleted += conn.execute(
            "DELETE FROM queue WHERE id IN (SELECT queue.id "
            f"FROM (VALUES {_values(len(batch), 2)}) AS v "
            "JOIN queue ON queue.id = v.column1 AND queue.token = v.column2)",
            _flat([(d.tag, d.token) for d in batch])).rowcount
    return deleted


def _finish_messages(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Remove the messages whose token is still current; return the deliveries that were not."""
    if len({d.tag for d in deliveries}) == len(deliveries):
        conn.execute("SAVEPOINT acks")
        if _delete_held(conn, deliveries) == len(deliveries):
            conn.execute("RELEASE acks")
            return []
        conn.execute("ROLLBACK TO acks")  # some token was stale: find out which
        conn.execute("RELEASE acks")
    return [d for d in deliveries if not conn.execute(_DELETE_HELD, (d.tag, d.token)).rowcount]


def finish_messages(conn: sqlite3.Connection, app: str,
                    deliveries: Sequence[Delivery]) -> list[Delivery]:
    with _Transaction(conn):
        return _finish_messages(conn, deliveries)


def _release(conn: sqlite3.Connection, deliveries: Sequence[Delivery], delay: float) -> None:
    eta = time.time() + delay if delay > 0 else 0.0
    conn.executemany(
        "UPDATE queue SET lease_until = NULL, worker = NULL, token = token + 1, eta = ? "
        "WHERE id = ? AND token = ?", [(eta, d.tag, d.token) for d in deliveries])


def release(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery],
            delay: float) -> None:
    with _Transaction(conn):
        _release(conn, deliveries, delay)


def _extend(conn: sqlite3.Connection, deliveries: Sequence[Delivery],
            lease: float) -> list[Delivery]:
    now = time.time()
    return [d for d in deliveries
            if not conn.execute(f"UPDATE queue SET lease_until = ? WHERE {_HELD}",
                                (now + lease, d.tag, d.token, now)).rowcount]


def extend(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery],
           lease: float) -> list[Delivery]:
    with _Transaction(conn):
        return _extend(conn, deliveries, lease)


def discard(conn: sqlite3.Connection, app: str, uuid: str) -> bool:
    return bool(conn.execute("DELETE FROM queue WHERE app = ? AND uuid = ? AND lease_until IS NULL",
                             (app, uuid)).rowcount)


def purge(conn: sqlite3.Connection, app: str, queue: str, limit: int) -> list[str]:
    """Up to ``limit`` waiting messages of ``queue`` (no lease), oldest first, deleted."""
    rows = conn.execute(
        "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE app = ? AND queue = ? "
        "AND lease_until IS NULL ORDER BY id LIMIT ?) RETURNING uuid",
        (app, queue, limit)).fetchall()
    return [uuid for (uuid,) in rows if uuid is not None]


def queue_stats(conn: sqlite3.Connection, app: str) -> QueueStats:
    now = time.time()
    queued, running, delayed = conn.execute(
        "SELECT count(*) FILTER (WHERE lease_until IS NULL), "
        "count(*) FILTER (WHERE lease_until IS NOT NULL), "
        "count(*) FILTER (WHERE lease_until IS NULL AND eta > ?) FROM queue WHERE app = ?",
        (now, app)).fetchone()
    by_queue = dict(conn.execute(
        "SELECT queue, count(*) FROM queue WHERE app = ? AND lease_until IS NULL "
        "GROUP BY queue ORDER BY queue", (app,)).fetchall())
    return QueueStats(queued=queued, running=running, delayed=delayed, by_queue=by_queue)


def flush_queue(conn: sqlite3.Connection, app: str) -> None:
    conn.execute("DELETE FROM queue WHERE app = ?", (app,))


# -- the result-store role: records, dead letters, workers ----------------------------------------


def _insert_records(conn: sqlite3.Connection, app: str, tasks: Sequence[NewTask]) -> None:
    conn.executemany(
        f"INSERT INTO records (app, {_RECORD_COLUMNS}, queue) "
        "VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?, NULL, NULL, ?, ?)",
        [(app, t.uuid, t.task_name, t.priority, t.args_json, t.kwargs_json, t.created_at,
          t.created_at, t.extra_json, t.queue) for t in tasks],
    )


def create_records(conn: sqlite3.Connection, app: str, tasks: Sequence[NewTask]) -> None:
    with _Transaction(conn):
        _insert_records(conn, app, tasks)


def _mark_running(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery],
                  now: float) -> set[str]:
    """Make each delivery the holder of its record; return the uuids whose record is final.

    A message without a record is left alone (the worker's outcome creates the record).
    """
    held = [d for d in deliveries if d.uuid is not None]
    if not held:
        return set()
    set_running = ("holder = v.column2, updated_at = ?, "
                   "status = CASE status WHEN 'new' THEN 'process' ELSE status END")
    marked = 0
    if len({d.uuid for d in held}) == len(held):
        for batch in _batches(held):
            marked += conn.execute(
                f"UPDATE records SET {set_running} FROM (VALUES {_values(len(batch), 2)}) AS v "
                f"WHERE records.uuid = v.column1 AND records.app = ? "
                f"AND records.status NOT IN {_FINAL}",
                [now, *_flat([(d.uuid, _holder(d)) for d in batch]), app]).rowcount
    else:  # one task twice: each delivery becomes the holder in turn, the last one stays
        marked = conn.executemany(
            f"UPDATE records SET {set_running.replace('v.column2', '?')} "
            f"WHERE uuid = ? AND app = ? AND status NOT IN {_FINAL}",
            [(_holder(d), now, d.uuid, app) for d in held]).rowcount
    if marked == len(held):
        return set()
    # Some record is final (cancelled meanwhile) or missing: one look for the final ones.
    blocked: set[str] = set()
    uuids = sorted({d.uuid for d in held if d.uuid is not None})
    for chunk in _batches(uuids):
        blocked.update(uuid for (uuid,) in conn.execute(
            f"SELECT uuid FROM records WHERE app = ? AND status IN {_FINAL} "
            f"AND uuid IN ({', '.join('?' * len(chunk))})", (app, *chunk)).fetchall())
    return blocked


def mark_running(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery]) -> set[str]:
    with _Transaction(conn):
        return _mark_running(conn, app, deliveries, time.time())


def _mark_queued(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery]) -> None:
    conn.executemany("UPDATE records SET status = 'new', holder = NULL "
                     "WHERE uuid = ? AND app = ? AND status = 'process' AND holder = ?",
                     [(d.uuid, app, _holder(d)) for d in deliveries if d.uuid is not None])


def mark_queued(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery]) -> None:
    with _Transaction(conn):
        _mark_queued(conn, app, deliveries)


# Errors that say "this value cannot be stored" (a lone surrogate in a string, a value too big),
# as opposed to a busy or broken database, which is worth retrying.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
                sqlite3.ProgrammingError, OverflowError, ValueError)

# The final record, inserted if it is missing (a record deleted meanwhile, an outcome of a
# message that had none), else updated unless already final; a missing args/kwargs is stored as
# the empty list/object. ``_upsert(n)`` writes ``n`` outcomes in one statement.
_OUTCOME_ROW = "(?, ?, ?, ?, ?, coalesce(?, '[]'), coalesce(?, '{}'), ?, ?, ?, ?, ?)"
_ON_CONFLICT = (
    "ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, "
    "\"returning\" = excluded.\"returning\", traceback = excluded.traceback, holder = NULL, "
    "extra = CASE WHEN excluded.extra IS NULL THEN records.extra "
    "WHEN records.extra IS NULL THEN excluded.extra "
    "ELSE json_patch(records.extra, excluded.extra) END, updated_at = excluded.updated_at "
    f"WHERE records.status NOT IN {_FINAL}"
)


@functools.lru_cache(maxsize=_ROWS)
def _upsert(rows: int) -> str:
    return (f"INSERT INTO records (app, {_RECORD_COLUMNS}) "
            f"VALUES {', '.join([_OUTCOME_ROW] * rows)} {_ON_CONFLICT}")


_FENCE = " AND (records.holder IS NULL OR records.holder = ?)"
_DEAD_LETTER = ("INSERT INTO dead_letters (app, uuid, task_name, reason, payload, deliveries, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")


def _dead_letter_params(app: str, o: Outcome, now: float) -> tuple[Any, ...]:
    return (app, o.uuid, o.task_name, o.dead_letter, _text(o.delivery.payload),
            o.delivery.deliveries, now)


def _write_one(conn: sqlite3.Connection, app: str, o: Outcome, now: float, fenced: bool) -> bool:
    """One final record (and its dead letter); False if rejected (final, or held by another)."""
    # A delivery that never started (set aside, malformed) holds nothing: the broker's token
    # was its fence. One that started must still be the record's holder.
    if fenced and o.delivery.started:
        taken = conn.execute(_upsert(1) + _FENCE,
                             (*_outcome_params(app, o, now), _holder(o.delivery))).rowcount
    else:
        taken = conn.execute(_upsert(1), _outcome_params(app, o, now)).rowcount
    if not taken:
        return False
    if o.dead_letter:
        conn.execute(_DEAD_LETTER, _dead_letter_params(app, o, now))
    return True


def _outcome_params(app: str, o: Outcome, now: float) -> tuple[Any, ...]:
    return (app, o.uuid, o.task_name, o.priority, o.status, o.args_json, o.kwargs_json,
            o.created_at or now, now, o.returning_json, o.traceback, o.record_extra())


def _write_all(conn: sqlite3.Connection, app: str, outcomes: Sequence[Outcome], now: float,
               fenced: bool, with_messages: bool) -> bool:
    """The common case in a statement or two per step: every outcome taken. False as soon as
    one is not (its message's token is stale, its record final or held by another); the caller
    then rolls back and writes them one by one to learn which."""
    if len({o.uuid for o in outcomes}) != len(outcomes):
        return False  # one task twice in a batch: the order of the writes matters
    if with_messages:
        acks = [o.delivery for o in outcomes if o.delivery.tag is not None]
        if len({d.tag for d in acks}) != len(acks) or _delete_held(conn, acks) != len(acks):
            return False
    held = [o for o in outcomes if fenced and o.delivery.started]
    free = [o for o in outcomes if not (fenced and o.delivery.started)]
    for batch in _batches(free):
        if conn.execute(_upsert(len(batch)),
                        _flat([_outcome_params(app, o, now) for o in batch])
                        ).rowcount != len(batch):
            return False
    if held and conn.executemany(
            _upsert(1) + _FENCE,
            [(*_outcome_params(app, o, now), _holder(o.delivery)) for o in held]
    ).rowcount != len(held):
        return False
    dead = [o for o in outcomes if o.dead_letter]
    if dead:
        conn.executemany(_DEAD_LETTER, [_dead_letter_params(app, o, now) for o in dead])
    return True


def _write_outcomes(conn: sqlite3.Connection, app: str, outcomes: Sequence[Outcome], now: float,
                    report: FinishReport, fenced: bool, with_messages: bool) -> None:
    """Write a batch; an outcome whose values cannot be stored is reported, not written.

    ``with_messages`` (SQLite as both roles): each outcome also removes its queue row, and only
    if the row still carries the delivery's token, which is the fencing check.
    """
    def write(batch: Sequence[Outcome], into: FinishReport) -> None:
        for o in batch:
            if with_messages and o.delivery.tag is not None and not conn.execute(
                    _DELETE_HELD, (o.delivery.tag, o.delivery.token)).rowcount:
                into.rejected.append(o)
                continue
            if not _write_one(conn, app, o, now, fenced):
                into.rejected.append(o)

    conn.execute("SAVEPOINT batch")
    attempt = FinishReport()
    try:
        if not _write_all(conn, app, outcomes, now, fenced, with_messages):
            conn.execute("ROLLBACK TO batch")  # some outcome is rejected: learn which
            write(outcomes, attempt)
        conn.execute("RELEASE batch")
        report.rejected.extend(attempt.rejected)
        return
    except _DATA_ERRORS:
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
    for o in outcomes:  # one bad value must neither block its batch nor be retried for ever
        conn.execute("SAVEPOINT one")
        try:
            write([o], report)
        except _DATA_ERRORS as exc:
            conn.execute("ROLLBACK TO one")
            report.unstorable.append((o, repr(exc)))
        conn.execute("RELEASE one")


def finish_records(conn: sqlite3.Connection, app: str, outcomes: Sequence[Outcome]) -> FinishReport:
    report = FinishReport()
    with _Transaction(conn):
        _write_outcomes(conn, app, outcomes, time.time(), report, fenced=True,
                        with_messages=False)
    return report


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


def get(conn: sqlite3.Connection, app: str, uuid: str) -> RecordRow | None:
    row = conn.execute(
        f"SELECT {_READ_COLUMNS} FROM records WHERE uuid = ? AND app = ?", (uuid, app)
    ).fetchone()
    return dict(row) if row is not None else None  # type: ignore[return-value]


def _cancel_record(conn: sqlite3.Connection, app: str, uuid: str, reason: str) -> bool:
    return bool(conn.execute(
        "UPDATE records SET status = 'cancel', updated_at = ?, extra = json_patch("
        "coalesce(extra, '{}'), json_object('cancel_reason', ?)) "
        "WHERE app = ? AND uuid = ? AND status = 'new'",
        (time.time(), reason, app, uuid)).rowcount)


def cancel_record(conn: sqlite3.Connection, app: str, uuid: str, reason: str) -> bool:
    with _Transaction(conn):
        return _cancel_record(conn, app, uuid, reason)


def dead_letters(conn: sqlite3.Connection, app: str, limit: int) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT id, uuid, task_name, reason, payload, deliveries, created_at FROM dead_letters "
        "WHERE app = ? ORDER BY id DESC LIMIT ?",
        (app, limit),
    ).fetchall()
    return [DeadLetter(**dict(r)) for r in rows]


def delete_dead_letters(conn: sqlite3.Connection, app: str, ids: Sequence[Any]) -> int:
    gone = 0
    for start in range(0, len(ids), 500):  # SQLite caps the variables of one statement
        chunk = list(ids[start:start + 500])
        marks = ", ".join("?" * len(chunk))
        gone += conn.execute(f"DELETE FROM dead_letters WHERE app = ? AND id IN ({marks})",
                             (app, *chunk)).rowcount
    return gone


def search(conn: sqlite3.Connection, app: str, status: str | None, task_name: str | None,
           limit: int, before: float | None, cursor: Cursor | None = None,
           queue: str | None = None) -> list[RecordRow]:
    where, params = ["app = ?"], [app]
    for column, value in (("status", status), ("task_name", task_name), ("queue", queue)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        where.append("created_at < ?")
        params.append(before)  # type: ignore[arg-type]
    if cursor is not None:
        where.append("(created_at, uuid) < (?, ?)")
        params += cursor  # type: ignore[arg-type]
    rows = conn.execute(f"SELECT {_READ_COLUMNS} FROM records WHERE {' AND '.join(where)} "
                        "ORDER BY created_at DESC, uuid DESC LIMIT ?", (*params, limit)).fetchall()
    return [dict(r) for r in rows]  # type: ignore[misc]


def heartbeat(conn: sqlite3.Connection, app: str, info: WorkerInfo, lease: float) -> None:
    with _Transaction(conn):
        _heartbeat(conn, app, info, lease)


def _heartbeat(conn: sqlite3.Connection, app: str, info: WorkerInfo, lease: float) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO workers (id, app, hostname, pid, started_at, heartbeat_at, expires_at, "
        "concurrency, queues, running, finished, failed, busy_seconds) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
        "expires_at = excluded.expires_at, running = excluded.running, "
        "finished = excluded.finished, failed = excluded.failed, "
        "busy_seconds = excluded.busy_seconds",
        (info.id, app, info.hostname, info.pid, info.started_at, now, now + lease,
         info.concurrency, ",".join(info.queues), info.running, info.finished, info.failed,
         info.busy_seconds),
    )
    # forget workers that died without unregistering, once their last lease is long gone
    conn.execute("DELETE FROM workers WHERE expires_at < ?", (now - 3600,))


def unregister(conn: sqlite3.Connection, app: str, worker: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ?", (worker,))


def live_workers(conn: sqlite3.Connection, app: str) -> int:
    """Workers whose last heartbeat has not expired; on this host, only those whose pid exists."""
    rows = conn.execute(
        "SELECT hostname, pid FROM workers WHERE expires_at > ? AND app = ?", (time.time(), app)
    ).fetchall()
    return count_live((r["hostname"], r["pid"]) for r in rows)


def dead_letter_count(conn: sqlite3.Connection, app: str) -> int:
    return conn.execute("SELECT count(*) FROM dead_letters WHERE app = ?", (app,)).fetchone()[0]


def workers(conn: sqlite3.Connection, app: str) -> list[WorkerRow]:
    rows = conn.execute(
        "SELECT id, hostname, pid, started_at, heartbeat_at, concurrency, queues, running, "
        "finished, failed, busy_seconds FROM workers WHERE expires_at > ? AND app = ? "
        "ORDER BY started_at, id", (time.time(), app)).fetchall()
    return [WorkerRow(id=r["id"], hostname=r["hostname"], pid=r["pid"],
                      started_at=r["started_at"], heartbeat_at=r["heartbeat_at"],
                      concurrency=r["concurrency"], queues=tuple(r["queues"].split(",")),
                      running=r["running"], finished=r["finished"], failed=r["failed"],
                      busy_seconds=r["busy_seconds"])
            for r in rows if count_live([(r["hostname"], r["pid"])])]


def delete_finished(conn: sqlite3.Connection, app: str, older_than: float | None) -> int:
    cutoff = time.time() - older_than if older_than is not None else None
    return conn.execute(
        f"DELETE FROM records WHERE app = ? AND status IN {_FINAL} "
        "AND (? IS NULL OR updated_at < ?)", (app, cutoff, cutoff)
    ).rowcount


def store_stats(conn: sqlite3.Connection, app: str) -> StoreStats:
    def one(sql: str) -> int:
        return conn.execute(sql, (app,)).fetchone()[0]

    return StoreStats(records=one("SELECT count(*) FROM records WHERE app = ?"),
                      dead_letters=one("SELECT count(*) FROM dead_letters WHERE app = ?"),
                      workers=live_workers(conn, app))


def flush_store(conn: sqlite3.Connection, app: str) -> None:
    with _Transaction(conn):
        for table in ("records", "dead_letters"):
            conn.execute(f"DELETE FROM {table} WHERE app = ?", (app,))


# -- fused: both roles in one transaction ---------------------------------------------------------


def enqueue(conn: sqlite3.Connection, app: str, tasks: Sequence[NewTask]) -> None:
    """Records and messages together: a task is queued with its record or not at all."""
    with _Transaction(conn):
        _insert_records(conn, app, tasks)
        _insert_messages(conn, app, tasks)


def cancel(conn: sqlite3.Connection, app: str, uuid: str, reason: str) -> bool:
    """Cancel a task that has not started; its message goes if no worker holds it (a worker
    that prefetched it will not run it)."""
    with _Transaction(conn):
        if not _cancel_record(conn, app, uuid, reason):
            return False
        discard(conn, app, uuid)
    return True


def exchange(conn: sqlite3.Connection, app: str, worker: str, queues: Sequence[str], limit: int,
             lease: float, finished: Sequence[Outcome], started: Sequence[Delivery],
             start: int) -> Exchange:
    """A worker round trip in one transaction: outcomes written (fenced by the queue row's
    token), deliveries started, the next batch claimed.

    Each step is one statement for the whole batch; only when something in it is rejected or
    refused (a stale token, a cancelled task) does that step look at its rows one by one, so
    what is accepted and what is reported is the same as writing them one at a time.
    """
    result = Exchange()
    writing = bool(finished or started)
    # The read first only for an exchange that would otherwise write nothing: an idle worker
    # woken by an unrelated commit takes no write lock. One that writes takes it anyway.
    ready = limit > 0 and (writing or ready_now(conn, app, queues))
    if not (ready or writing):
        return result
    now = time.time()
    with _Transaction(conn):
        if finished:
            report = FinishReport()
            _write_outcomes(conn, app, finished, now, report, fenced=False, with_messages=True)
            result.rejected, result.unstorable = report.rejected, report.unstorable
            # the next attempt of a retried task, only if its outcome was taken
            refused = {id(o) for o in report.rejected} | {id(o) for o, _ in report.unstorable}
            follow_ups = [o.follow_up for o in finished
                          if o.follow_up is not None and id(o) not in refused]
            if follow_ups:
                _insert_records(conn, app, follow_ups)
                _insert_messages(conn, app, follow_ups)
        if started:
            result.refused.extend(_start(conn, started))
            result.refused.extend(_refuse_final(conn, app, [d for d in started if d.started],
                                                now))
        if ready:
            fetched = _claim(conn, app, worker, queues, limit, lease, start, now)
            gone = {id(d) for d in _refuse_final(conn, app, [d for d in fetched if d.started],
                                                 now)}
            result.deliveries = [d for d in fetched if id(d) not in gone]
    return result


def _refuse_final(conn: sqlite3.Connection, app: str, started: list[Delivery],
                  now: float) -> list[Delivery]:
    """Mark the records of ``started`` running; those whose task was cancelled (or is final)
    meanwhile lose their message and are returned: drop them, don't run them."""
    if not started:
        return []
    blocked = _mark_running(conn, app, started, now)
    if not blocked:
        return []
    gone = [d for d in started if d.uuid in blocked]
    conn.executemany(_DELETE_HELD, [(d.tag, d.token) for d in gone])
    return gone


def fused_release(conn: sqlite3.Connection, app: str, deliveries: Sequence[Delivery],
                  delay: float) -> None:
    with _Transaction(conn):
        _mark_queued(conn, app, deliveries)
        _release(conn, deliveries, delay)


def fused_heartbeat(conn: sqlite3.Connection, app: str, info: WorkerInfo,
                    deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
    with _Transaction(conn):
        lost = _extend(conn, deliveries, lease)
        _heartbeat(conn, app, info, lease)
    return lost


def flush(conn: sqlite3.Connection, app: str) -> None:
    with _Transaction(conn):
        for table in ("records", "queue", "dead_letters"):
            conn.execute(f"DELETE FROM {table} WHERE app = ?", (app,))
