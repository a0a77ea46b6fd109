"""SQL for the embedded backend, run on one ``sqlite3`` connection by whoever owns it.

The same functions serve the sync client (called directly, one connection per thread) and the
async transport (called on its single database thread). Claiming is one ``BEGIN IMMEDIATE``
transaction: SQLite has one writer at a time, so two workers can never lease the same row.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import replace
from typing import Any

from qtasks.backends.base import DeadLetter, Delivery, NewTask, Outcome
from qtasks.core.record import RecordRow
from qtasks.exceptions import BackendError

SCHEMA_VERSION = "2"

# Several apps may share one database file: every row carries the name of its app, and every
# statement below is scoped to one app.

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    uuid TEXT PRIMARY KEY,
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
    extra TEXT
) WITHOUT ROWID;
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
    worker TEXT
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (app, queue, priority, id);
CREATE INDEX IF NOT EXISTS queue_lease ON queue (app, lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_worker ON queue (worker) WHERE worker IS NOT NULL;
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
    concurrency INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_FINAL = "('success', 'error', 'cancel')"
_RECORD_COLUMNS = (
    "uuid, task_name, priority, status, args, kwargs, created_at, updated_at, "
    "\"returning\", traceback, extra"
)
_READY = "app = :app AND {queues} AND eta <= :now AND (lease_until IS NULL OR lease_until < :now)"


def _in_queues(queues: tuple[str, ...], params: dict[str, object]) -> str:
    """``queue IN (:q0, ...)``, the names put into ``params``."""
    params.update({f"q{i}": queue for i, queue in enumerate(queues)})
    return f"queue IN ({', '.join(f':q{i}' for i in range(len(queues)))})"


def _ready(queues: tuple[str, ...], params: dict[str, object]) -> str:
    """The condition of a message a worker of ``queues`` may claim now."""
    return _READY.format(queues=_in_queues(queues, params))
_HOSTNAME = socket.gethostname()


def connect(target: str, uri: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with WAL for files."""
    conn = sqlite3.connect(target, uri=uri, timeout=60.0, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    if not uri:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


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
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found is not None and found != SCHEMA_VERSION:
        raise BackendError(
            f"this database was written by a qtasks release with schema {found}, this release "
            f"reads schema {SCHEMA_VERSION}; use a new database file or the matching release"
        )


class _Transaction:
    """``with _Transaction(conn):`` -- BEGIN IMMEDIATE, COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def enqueue(conn: sqlite3.Connection, app: str, tasks: list[NewTask]) -> None:
    with _Transaction(conn):
        _insert_tasks(conn, app, tasks)


def _insert_tasks(conn: sqlite3.Connection, app: str, tasks: list[NewTask]) -> None:
    conn.executemany(
        f"INSERT INTO records (app, {_RECORD_COLUMNS}) "
        "VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?, NULL, NULL, ?)",
        [(app, t.uuid, t.task_name, t.priority, t.args_json, t.kwargs_json, t.created_at,
          t.created_at, t.extra_json) for t in tasks],
    )
    conn.executemany(
        "INSERT INTO queue (app, uuid, queue, priority, eta, payload) VALUES (?, ?, ?, ?, ?, ?)",
        [(app, t.uuid, t.queue, t.priority, t.eta or 0.0, t.envelope) for t in tasks],
    )


def next_due(conn: sqlite3.Connection, app: str,
             queues: tuple[str, ...] = ("default",)) -> float | None:
    params: dict[str, object] = {"app": app, "now": time.time()}
    row = conn.execute(
        f"SELECT min(eta) FROM queue WHERE app = :app AND {_in_queues(queues, params)} "
        "AND eta > :now "
        "AND lease_until IS NULL", params,
    ).fetchone()
    return row[0]


def cancel(conn: sqlite3.Connection, app: str, uuid: str, reason: str) -> bool:
    """Cancel a task no worker holds. False if it is running, finished or unknown."""
    now = time.time()
    with _Transaction(conn):
        gone = conn.execute(
            "DELETE FROM queue WHERE app = ? AND uuid = ? AND lease_until IS NULL", (app, uuid)
        ).rowcount
        if not gone:
            return False
        conn.execute(
            "UPDATE records SET status = 'cancel', updated_at = ?, extra = json_patch("
            "coalesce(extra, '{}'), json_object('cancel_reason', ?)) "
            f"WHERE app = ? AND uuid = ? AND status NOT IN {_FINAL}",
            (now, reason, app, uuid),
        )
    return True


def get(conn: sqlite3.Connection, app: str, uuid: str) -> RecordRow | None:
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM records WHERE uuid = ? AND app = ?", (uuid, app)
    ).fetchone()
    return dict(row) if row is not None else None  # type: ignore[return-value]


def _lost_worker_outcomes(
    conn: sqlite3.Connection, app: str, now: float, max_deliveries: int
) -> int:
    """Dead-letter messages whose lease expired after their last allowed delivery."""
    lost = conn.execute(
        "SELECT id, uuid, payload, deliveries, priority FROM queue "
        "WHERE lease_until IS NOT NULL AND lease_until < ? AND deliveries >= ? AND app = ?",
        (now, max_deliveries, app),
    ).fetchall()
    for row in lost:
        reason = (
            f"WorkerLostError: the worker running this task stopped without finishing it "
            f"{row['deliveries']} times (max_deliveries={max_deliveries}); set aside"
        )
        conn.execute(
            f"UPDATE records SET status = 'error', traceback = ?, updated_at = ? "
            f"WHERE uuid = ? AND status NOT IN {_FINAL}",
            (reason, now, row["uuid"]),
        )
        name = conn.execute("SELECT task_name FROM records WHERE uuid = ?", (row["uuid"],))
        found = name.fetchone()
        conn.execute(
            "INSERT INTO dead_letters (app, uuid, task_name, reason, payload, deliveries, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app, row["uuid"], found["task_name"] if found else None, reason, row["payload"],
             row["deliveries"], now),
        )
        conn.execute("DELETE FROM queue WHERE id = ?", (row["id"],))
    return len(lost)


def claim(
    conn: sqlite3.Connection, app: str, worker_id: str, limit: int, lease: float,
    max_deliveries: int, finished: list[Outcome] | tuple[()] = (),
    queues: tuple[str, ...] = ("default",),
) -> list[Delivery]:
    """Write ``finished`` outcomes, then lease up to ``limit`` ready messages of ``queues``:
    one transaction."""
    now = time.time()
    params: dict[str, object] = {"now": now, "app": app}
    condition = _ready(queues, params)
    # A read first: an idle worker woken by an unrelated commit must not take the write lock.
    ready = limit > 0 and conn.execute(
        f"SELECT 1 FROM queue WHERE {condition} LIMIT 1", params
    ).fetchone() is not None
    if not ready and not finished:
        return []
    rows: list[sqlite3.Row] = []
    with _Transaction(conn):
        if finished:
            _record_outcomes(conn, app, finished, now)
        if ready:
            _lost_worker_outcomes(conn, app, now, max_deliveries)
            rows = conn.execute(
                "UPDATE queue SET lease_until = :until, worker = :worker, "
                "deliveries = deliveries + 1 WHERE id IN "
                f"(SELECT id FROM queue WHERE {condition} ORDER BY priority, id LIMIT :n) "
                "RETURNING id, uuid, payload, deliveries, priority",
                {**params, "until": now + lease, "worker": worker_id, "n": limit},
            ).fetchall()
        if rows:
            conn.execute(
                f"UPDATE records SET status = 'process', updated_at = ? "
                f"WHERE status = 'new' AND uuid IN ({','.join('?' * len(rows))})",
                (now, *(r["uuid"] for r in rows)),
            )
    rows.sort(key=lambda r: (r["priority"], r["id"]))
    return [Delivery(r["id"], r["uuid"], r["payload"], r["deliveries"], r["priority"]) for r in rows]


# Errors that say "this value cannot be stored" (a lone surrogate in a string, a value too big),
# as opposed to a busy or broken database, which is worth retrying.
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError,
                sqlite3.ProgrammingError, OverflowError, ValueError)


def _record_outcomes(
    conn: sqlite3.Connection, app: str, outcomes: list[Outcome], now: float
) -> None:
    """Write a batch; if some outcome cannot be stored, store an error record in its place.

    One bad result must neither block the batch it came with nor be retried for ever.
    """
    conn.execute("SAVEPOINT batch")
    try:
        _write_outcomes(conn, app, outcomes, now)
        conn.execute("RELEASE batch")
        return
    except _DATA_ERRORS:
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
    for outcome in outcomes:
        conn.execute("SAVEPOINT one")
        try:
            _write_outcomes(conn, app, [outcome], now)
        except _DATA_ERRORS as exc:
            conn.execute("ROLLBACK TO one")
            reason = f"ResultStorageError: the outcome could not be stored: {exc!r}"
            _write_outcomes(conn, app, [replace(
                outcome, status="error", returning_json=None, traceback=reason,
                extra_json=None, dead_letter=reason, args_json=None, kwargs_json=None,
            )], now)
        conn.execute("RELEASE one")


def _write_outcomes(
    conn: sqlite3.Connection, app: str, outcomes: list[Outcome], now: float
) -> None:
    """Final records (a record already final is left alone), queue rows gone, dead letters."""
    conn.executemany(
        f"INSERT INTO records (app, {_RECORD_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, coalesce(?, '[]'), coalesce(?, '{}'), ?, ?, ?, ?, ?) "
        "ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, "
        "\"returning\" = excluded.\"returning\", traceback = excluded.traceback, "
        "extra = CASE WHEN excluded.extra IS NULL THEN records.extra "
        "WHEN records.extra IS NULL THEN excluded.extra "
        "ELSE json_patch(records.extra, excluded.extra) END, updated_at = excluded.updated_at "
        f"WHERE records.status NOT IN {_FINAL}",
        [(app, o.uuid, o.task_name, o.priority, o.status, o.args_json, o.kwargs_json,
          o.created_at or now, now, o.returning_json, o.traceback, o.extra_json)
         for o in outcomes],
    )
    conn.executemany("DELETE FROM queue WHERE id = ?", [(o.delivery.tag,) for o in outcomes])
    follow_ups = [o.follow_up for o in outcomes if o.follow_up is not None]
    if follow_ups:
        _insert_tasks(conn, app, follow_ups)
    dead = [o for o in outcomes if o.dead_letter]
    if dead:
        conn.executemany(
            "INSERT INTO dead_letters (app, uuid, task_name, reason, payload, deliveries, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(app, o.uuid, o.task_name, o.dead_letter, _text(o.delivery.payload),
              o.delivery.deliveries, now) for o in dead],
        )


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


def release(
    conn: sqlite3.Connection, app: str, worker_id: str, deliveries: list[Delivery], counted: bool
) -> None:
    if not deliveries:
        return
    with _Transaction(conn):
        conn.executemany(
            "UPDATE queue SET lease_until = NULL, worker = NULL, "
            "deliveries = deliveries - ? WHERE id = ? AND worker = ?",
            [(0 if counted else 1, d.tag, worker_id) for d in deliveries],
        )
        conn.executemany(
            "UPDATE records SET status = 'new' WHERE uuid = ? AND status = 'process'",
            [(d.uuid,) for d in deliveries],
        )


def heartbeat(
    conn: sqlite3.Connection, app: str, worker_id: str, lease: float, concurrency: int,
    started_at: float,
) -> None:
    now = time.time()
    with _Transaction(conn):
        conn.execute(
            "UPDATE queue SET lease_until = ? WHERE worker = ? AND lease_until IS NOT NULL",
            (now + lease, worker_id),
        )
        conn.execute(
            "INSERT INTO workers (id, app, hostname, pid, started_at, heartbeat_at, expires_at, "
            "concurrency) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            (worker_id, app, _HOSTNAME, os.getpid(), started_at, now, now + lease, concurrency),
        )
        # forget workers that died without unregistering, once their last lease is long gone
        conn.execute("DELETE FROM workers WHERE expires_at < ?", (now - 3600,))


def unregister(conn: sqlite3.Connection, app: str, worker_id: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def live_workers(conn: sqlite3.Connection, app: str) -> int:
    """Workers whose last heartbeat has not expired; on this host, only those whose pid exists."""
    rows = conn.execute(
        "SELECT hostname, pid FROM workers WHERE expires_at > ? AND app = ?", (time.time(), app)
    ).fetchall()
    return sum(1 for r in rows if r["hostname"] != _HOSTNAME or _pid_alive(r["pid"]))


def ping(conn: sqlite3.Connection, app: str) -> bool:
    return live_workers(conn, app) > 0


def flush(conn: sqlite3.Connection, app: str) -> None:
    with _Transaction(conn):
        for table in ("records", "queue", "dead_letters"):
            conn.execute(f"DELETE FROM {table} WHERE app = ?", (app,))


def delete_finished(conn: sqlite3.Connection, app: str) -> int:
    return conn.execute(
        f"DELETE FROM records WHERE app = ? AND status IN {_FINAL}", (app,)
    ).rowcount


def dead_letters(conn: sqlite3.Connection, app: str, limit: int) -> list[DeadLetter]:
    rows = conn.execute(
        "SELECT id, uuid, task_name, reason, payload, deliveries, created_at FROM dead_letters "
        "WHERE app = ? ORDER BY id DESC LIMIT ?",
        (app, limit),
    ).fetchall()
    return [DeadLetter(**dict(r)) for r in rows]


def stats(conn: sqlite3.Connection, app: str) -> dict[str, Any]:
    def one(sql: str) -> int:
        return conn.execute(sql, (app,)).fetchone()[0]

    return {
        "queued": one("SELECT count(*) FROM queue WHERE app = ? AND lease_until IS NULL"),
        "running": one("SELECT count(*) FROM queue WHERE app = ? AND lease_until IS NOT NULL"),
        "records": one("SELECT count(*) FROM records WHERE app = ?"),
        "dead_letters": one("SELECT count(*) FROM dead_letters WHERE app = ?"),
        "workers": live_workers(conn, app),
        "by_queue": dict(conn.execute(
            "SELECT queue, count(*) FROM queue WHERE app = ? AND lease_until IS NULL "
            "GROUP BY queue ORDER BY queue", (app,)).fetchall()),
    }
