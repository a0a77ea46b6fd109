"""SQL for the PostgreSQL backend: the schema and its migrations, the statements, and the
operations built on them. Pure: no connection here. ``connection`` runs the operations on
psycopg's blocking connections (the sync app) and asyncio ones (the worker, the async app).

Why one statement per operation. A worker round trip (outcomes written, deliveries started, the
next batch claimed) is a single statement made of data-modifying CTEs, run in autocommit: it is
atomic on its own, costs one network round trip, and needs no ``BEGIN``/``COMMIT`` trips. The
parts of one statement share a snapshot and cannot see each other's writes, so each part reads
what an earlier part *returned* (``RETURNING``), never the table it changed; and no two parts
touch the same row (the claim leaves alone the messages this round trip finishes).

The queue table. A message is ``ready`` (index ``queue_ready``: app, queue, priority, id, the
claim order), ``delayed`` until its ``eta`` (``queue_delayed``), or ``leased`` until
``lease_until`` (``queue_leased``). The claim takes ready messages, due delayed ones and lapsed
leases in one go, ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait on each other.
Each claim bumps the row's ``token``; every later change names the token it was given, and a
worker whose lease was taken over changes nothing (fencing). A finished message is deleted, so
the table holds only pending work; the dead rows that leaves are vacuumed (see ``SCHEMA``).

Notifications: enqueue, release and follow-ups ``pg_notify`` the ``<schema>_wake`` channel with
``app|queue``; idle workers wait on it. A final write notifies ``<schema>_done`` with
``app|uuid``, only for records a producer marked ``watched`` (it waits on them). ``NOTIFY``
inside a transaction is delivered at commit, so a task enqueued in the caller's transaction wakes
nobody before it is visible.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from qtasks.backends.base import (
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
from qtasks.core.record import RecordRow

READY, DELAYED, LEASED = 0, 1, 2
_FINAL = "('success', 'error', 'cancel')"
RECORD_COLUMNS = ("uuid", "task_name", "priority", "status", "args", "kwargs", "created_at",
                  "updated_at", "returning", "traceback", "extra", "queue")
_COLUMNS = ", ".join(f'"{c}"' if c == "returning" else c for c in RECORD_COLUMNS)

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

# -- schema and migrations --------------------------------------------------------------------------

# Each migration brings the schema from version i to i + 1; ``migrate`` runs those not yet run,
# in one transaction, under an advisory lock. Never edit a released one: add the next.
#
# Vacuum. Every task inserts a queue row, updates it once or twice (claim, start) and deletes
# it; its record is inserted and updated twice (running, final). The queue table therefore
# turns over completely, and its dead rows must go back to the free space map quickly, or each
# claim walks over them: autovacuum runs on it after a few hundred dead rows instead of the
# default 20 % of the table, without the cost delay that throttles it. The records table is
# filled below 100 % (``fillfactor``) so that the two updates of a record stay on its page as
# heap-only tuples (none of the updated columns is indexed): they add no index entries.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.queue (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app text NOT NULL,
        queue text NOT NULL DEFAULT 'default',
        priority integer NOT NULL DEFAULT 0,
        state smallint NOT NULL DEFAULT 0,
        eta double precision NOT NULL DEFAULT 0,
        lease_until double precision,
        token bigint NOT NULL DEFAULT 0,
        deliveries integer NOT NULL DEFAULT 0,
        worker text,
        uuid text,
        payload text NOT NULL
    ) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
            autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
            autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
    CREATE INDEX queue_ready ON {s}.queue (app, queue, priority, id) WHERE state = 0;
    CREATE INDEX queue_delayed ON {s}.queue (app, eta) WHERE state = 1;
    CREATE INDEX queue_leased ON {s}.queue (app, lease_until) WHERE state = 2;
    CREATE INDEX queue_uuid ON {s}.queue (app, uuid);
    CREATE TABLE {s}.records (
        app text NOT NULL,
        uuid text NOT NULL,
        task_name text NOT NULL,
        priority integer NOT NULL,
        status text NOT NULL,
        args text NOT NULL,
        kwargs text NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        "returning" text,
        traceback text,
        extra text,
        holder text,
        watched boolean NOT NULL DEFAULT false,
        PRIMARY KEY (app, uuid)
    ) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0);
    CREATE INDEX records_created ON {s}.records (app, created_at);
    CREATE TABLE {s}.dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app text NOT NULL,
        uuid text,
        task_name text,
        reason text NOT NULL,
        payload text,
        deliveries integer NOT NULL DEFAULT 0,
        created_at double precision NOT NULL
    );
    CREATE INDEX dead_letters_app ON {s}.dead_letters (app, id);
    CREATE TABLE {s}.workers (
        id text PRIMARY KEY,
        app text NOT NULL,
        hostname text NOT NULL,
        pid integer NOT NULL,
        started_at double precision NOT NULL,
        heartbeat_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        concurrency integer NOT NULL
    );
    """,
    # 1 -> 2: keyset search (both orderings indexed to the uuid, so a page never sorts; the
    # columns never change, so updates stay heap-only), records keep their queue, and workers
    # report queues and load.
    """
    CREATE INDEX records_keyset ON {s}.records (app, created_at, uuid);
    DROP INDEX {s}.records_created;
    ALTER INDEX {s}.records_keyset RENAME TO records_created;
    CREATE INDEX records_name ON {s}.records (app, task_name, created_at, uuid);
    ALTER TABLE {s}.records ADD COLUMN queue text;
    ALTER TABLE {s}.workers ADD COLUMN queues text NOT NULL DEFAULT 'default',
                            ADD COLUMN running integer NOT NULL DEFAULT 0,
                            ADD COLUMN finished bigint NOT NULL DEFAULT 0,
                            ADD COLUMN failed bigint NOT NULL DEFAULT 0,
                            ADD COLUMN busy_seconds double precision NOT NULL DEFAULT 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


@functools.lru_cache(maxsize=256)
def positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """``statement`` with ``$n`` placeholders for its ``%(name)s`` ones, and the names in
    ``$n`` order: what psycopg's raw cursors take. psycopg converts a statement longer than
    4 kB (most of ours) again at every call; this conversion is made once per text."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        return f"${names.setdefault(name, len(names) + 1)}"

    return _PLACEHOLDER.sub(number, statement), tuple(names)


def schema_sql(schema: str) -> dict[str, str]:
    """The statements of schema management, for ``schema``."""
    s = f'"{schema}"'
    return {
        "lock": "SELECT pg_advisory_xact_lock(hashtext(%s))",
        "create": f"CREATE SCHEMA IF NOT EXISTS {s}",
        "meta": f"CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
        "version": f"SELECT value FROM {s}.meta WHERE key = 'schema_version'",
        "set_version": (f"INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        "exists": "SELECT to_regclass(%s) IS NOT NULL",
    }


def migration(index: int, schema: str) -> list[str]:
    """The statements of migration ``index`` (from version ``index`` to ``index + 1``)."""
    text = MIGRATIONS[index].format(s=f'"{schema}"')
    return [part.strip() for part in text.split(";") if part.strip()]


# -- statements -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sql:
    """The statements of one schema: ``schema`` is checked by the caller (``SCHEMA_NAME``)."""

    schema: str

    @property
    def s(self) -> str:
        return f'"{self.schema}"'

    @property
    def wake_channel(self) -> str:
        return f"{self.schema}_wake"

    @property
    def done_channel(self) -> str:
        return f"{self.schema}_done"


# The parts below are put together by the ``*_sql`` functions, cached per schema and shape: a
# statement's text is the key psycopg prepares it under (after a few uses), so each shape is
# planned once per connection.

# A batch travels as one JSON parameter, unpacked by ``json_to_recordset``: psycopg dumps list
# parameters element by element in Python (about 20 µs a row for a task's eleven columns, as
# arrays), while ``json.dumps`` does a row in a few.
_TASKS = (
    "SELECT * FROM json_to_recordset(%(tasks)s::json) AS t(uuid text, task_name text, "
    "priority int, args text, kwargs text, created_at float8, extra text, queue text, "
    "eta float8, payload text, parent text, n int)"
)


def _insert_records(s: str, source: str, watched: str = "false") -> str:
    return (f"INSERT INTO {s}.records (app, uuid, task_name, priority, status, args, kwargs, "
            "created_at, updated_at, extra, watched, queue) "
            f"SELECT %(app)s, uuid, task_name, priority, 'new', args, kwargs, created_at, "
            f"created_at, extra, {watched}, queue FROM {source}")


def _insert_messages(s: str, source: str) -> str:
    return (f"INSERT INTO {s}.queue (app, uuid, queue, priority, state, eta, payload) "
            f"SELECT %(app)s, nullif(uuid, ''), queue, priority, "
            f"CASE WHEN eta > %(now)s THEN {DELAYED} ELSE {READY} END, eta, payload "
            f"FROM {source} ORDER BY n RETURNING queue")


def _wake(sql: Sql, source: str) -> str:
    return (f"SELECT pg_notify('{sql.wake_channel}', %(app)s || '|' || queue) "
            f"FROM (SELECT DISTINCT queue FROM {source}) w")


# Statements whose plan does not depend on their values: equality on indexed columns, arrays of
# ids, ranges walked in index order behind a LIMIT. On the backend's own connections (generic
# plans forced there, see connection.py) only these are prepared and reuse one plan; every
# other statement is planned for its values at each call. A range filter without an index
# order to walk (``created_at < $1`` in ``expire_records``) gets a sequential scan in a generic
# plan: 10 ms instead of 0.03 ms on 50,000 records.
GENERIC: set[str] = set()


def _generic(text: str) -> str:
    GENERIC.add(text)
    return text


@functools.lru_cache(maxsize=64)
def enqueue_sql(sql: Sql, records: bool, messages: bool, watched: bool = False) -> str:
    """Insert the tasks' records, messages or both, and wake the workers of their queues."""
    s = sql.s
    parts = [f"t AS ({_TASKS})"]
    if records:
        parts.append(f"r AS ({_insert_records(s, 't', 'true' if watched else 'false')})")
    if messages:
        parts.append(f"m AS ({_insert_messages(s, 't')})")
        parts.append(f"w AS ({_wake(sql, 'm')})")
        return _generic(f"WITH {', '.join(parts)} SELECT count(*) FROM w")
    return _generic(f"WITH {', '.join(parts)} SELECT 0")


def task_params(app: str, tasks: Sequence[NewTask], now: float,
                parents: Sequence[str] | None = None) -> dict[str, Any]:
    return {"app": app, "now": now, "tasks": _tasks_json(tasks, parents)}


def _tasks_json(tasks: Sequence[NewTask], parents: Sequence[str] | None = None) -> str:
    return json.dumps([
        {"uuid": t.uuid, "task_name": t.task_name, "priority": t.priority, "args": t.args_json,
         "kwargs": t.kwargs_json, "created_at": t.created_at, "extra": t.extra_json,
         "queue": t.queue, "eta": t.eta or 0.0, "payload": t.envelope,
         "parent": parents[i] if parents is not None else "", "n": i + 1}
        for i, t in enumerate(tasks)])


# The finish: outcomes in, the numbers (``n``) of those taken out. ``fused``: each outcome also
# deletes its message, fenced by the message's token, and is written only if it did (or has no
# message); the follow-ups of taken outcomes are queued. Not fused (a store beside another
# broker): the record's ``holder`` is the fence.
_OUTCOMES = (
    "SELECT * FROM json_to_recordset(%(outcomes)s::json) AS v(tag bigint, token bigint, "
    "uuid text, task_name text, priority int, status text, args text, kwargs text, "
    "created_at float8, \"returning\" text, traceback text, extra text, dead text, "
    "payload text, deliveries int, holder text, n int)"
)


def _finish_parts(sql: Sql, fused: bool, extras: bool = True) -> list[str]:
    """``extras``: the dead-letter and follow-up parts, left out of a batch that has neither
    (most batches: a statement does less for each part it does not have)."""
    s = sql.s
    parts = [f"v AS ({_OUTCOMES})"]
    if fused:
        # ``q.id = ANY(ids)`` as well as the join: the planner cannot tell how many rows a
        # JSON batch holds (it guesses 100) and would hash-join a scan of the whole table
        parts.append(f"acked AS (DELETE FROM {s}.queue q USING v WHERE "
                     "q.id = ANY(%(acks)s::bigint[]) AND q.id = v.tag AND q.token = v.token "
                     "RETURNING v.n)")
        parts.append("ok AS (SELECT * FROM v WHERE v.tag IS NULL "
                     "OR v.n IN (SELECT n FROM acked))")
    else:
        parts.append("ok AS (SELECT * FROM v)")
    parts.append(
        f"up AS (INSERT INTO {s}.records AS r (app, uuid, task_name, priority, status, args, "
        "kwargs, created_at, updated_at, \"returning\", traceback, extra, holder) "
        "SELECT %(app)s, uuid, task_name, priority, status, coalesce(args, '[]'), "
        "coalesce(kwargs, '{}'), CASE WHEN created_at > 0 THEN created_at ELSE %(now)s END, "
        "%(now)s, \"returning\", traceback, extra, holder FROM ok ORDER BY n "
        "ON CONFLICT (app, uuid) DO UPDATE SET status = excluded.status, "
        "\"returning\" = excluded.\"returning\", traceback = excluded.traceback, holder = NULL, "
        "updated_at = excluded.updated_at, extra = CASE WHEN excluded.extra IS NULL THEN r.extra "
        "WHEN r.extra IS NULL THEN excluded.extra "
        "ELSE (r.extra::jsonb || excluded.extra::jsonb)::text END "
        f"WHERE r.status NOT IN {_FINAL} AND (excluded.holder IS NULL OR r.holder IS NULL "
        "OR r.holder = excluded.holder) RETURNING r.uuid, r.watched)")
    if extras:
        parts.append(
            f"dl AS (INSERT INTO {s}.dead_letters (app, uuid, task_name, reason, payload, "
            "deliveries, created_at) SELECT %(app)s, ok.uuid, ok.task_name, ok.dead, ok.payload, "
            "ok.deliveries, %(now)s FROM ok JOIN up ON up.uuid = ok.uuid "
            "WHERE ok.dead IS NOT NULL)")
    parts.append(f"done AS (SELECT pg_notify('{sql.done_channel}', %(app)s || '|' || uuid) "
                 "FROM up WHERE watched)")
    if fused and extras:
        parts.append(f"f AS ({_TASKS.replace('AS t(', 'AS f(')})")
        parts.append("fo AS (SELECT * FROM f WHERE f.parent IN (SELECT uuid FROM up))")
        parts.append(f"fr AS ({_insert_records(s, 'fo')})")
        parts.append(f"fm AS ({_insert_messages(s, 'fo')})")
        parts.append(f"fw AS ({_wake(sql, 'fm')})")
    return parts


def _finish_result(fused: bool, extras: bool = True) -> str:
    woken = "(SELECT count(*) FROM fw)" if fused and extras else "0"
    return ("array(SELECT ok.n FROM ok JOIN up ON up.uuid = ok.uuid), "
            f"(SELECT count(*) FROM done), {woken}")


@functools.lru_cache(maxsize=64)
def finish_sql(sql: Sql, fused: bool, extras: bool = True) -> str:
    return _generic(f"WITH {', '.join(_finish_parts(sql, fused, extras))} "
                    f"SELECT {_finish_result(fused, extras)}")


def outcome_params(app: str, outcomes: Sequence[Outcome], now: float, fused: bool
                   ) -> dict[str, Any]:
    # Not fused, the tag and token are another broker's (of any type): only ``holder`` counts.
    params: dict[str, Any] = {
        "app": app, "now": now,
        "acks": [o.delivery.tag for o in outcomes if fused and o.delivery.tag is not None],
        "outcomes": json.dumps([
        {"tag": o.delivery.tag if fused else None, "token": o.delivery.token if fused else None,
         "uuid": o.uuid,
         "task_name": o.task_name, "priority": o.priority, "status": o.status,
         "args": o.args_json, "kwargs": o.kwargs_json, "created_at": o.created_at,
         "returning": o.returning_json, "traceback": o.traceback, "extra": o.record_extra(),
         "dead": o.dead_letter,
         "payload": _text(o.delivery.payload) if o.dead_letter else None,
         "deliveries": o.delivery.deliveries,
         # not fused: a delivery that started must still hold its record (the broker fenced
         # the others: one that never started holds nothing)
         "holder": holder(o.delivery) if not fused and o.delivery.started else None, "n": i + 1}
        for i, o in enumerate(outcomes)])}
    if fused:
        with_follow_up = [o for o in outcomes if o.follow_up is not None]
        params["tasks"] = _tasks_json([o.follow_up for o in with_follow_up],  # type: ignore[misc]
                                      [o.uuid for o in with_follow_up])
    return params


def holder(d: Delivery) -> str:
    return f"{d.tag}:{d.token}"


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


# Starting: count the delivery (only under a live lease of its own), make it the holder of its
# record, and report those whose record is final (cancelled meanwhile): they must not run.
# ``blocked``: started deliveries whose record exists but was not marked, i.e. is final. It is
# decided from what the UPDATE did (it sees a cancel committed while the statement ran, and
# waits for one in progress), never from a plain read of records, which sees the statement's
# snapshot: a task cancelled meanwhile would look runnable.
_MARK = (
    "UPDATE {s}.records r SET holder = {holder}, updated_at = %(now)s, "
    "status = CASE r.status WHEN 'new' THEN 'process' ELSE r.status END FROM {src} c "
    f"WHERE {{cond}} r.app = %(app)s AND r.uuid = c.uuid AND r.status NOT IN {_FINAL} "
    "RETURNING r.uuid"
)
_BLOCKED = ("SELECT c.uuid FROM {src} c WHERE {cond} c.uuid IS NOT NULL "
            "AND c.uuid NOT IN (SELECT uuid FROM {marked}) AND EXISTS (SELECT 1 FROM "
            "{s}.records r WHERE r.app = %(app)s AND r.uuid = c.uuid)")
_HOLDER = "c.id::text || ':' || c.token::text"


def _start_parts(sql: Sql, fused: bool) -> list[str]:
    s = sql.s
    parts = [
        "sv AS (SELECT * FROM unnest(%(s_id)s::bigint[], %(s_token)s::bigint[]) AS sv(id, token))",
        f"st AS (UPDATE {s}.queue q SET deliveries = q.deliveries + 1 FROM sv "
        "WHERE q.id = ANY(%(s_id)s::bigint[]) AND q.id = sv.id AND q.token = sv.token "
        f"AND q.state = {LEASED} "
        "AND q.lease_until >= %(now)s RETURNING q.id, q.uuid, q.token)",
    ]
    if fused:
        parts.append(f"sm AS ({_MARK.format(s=s, src='st', cond='', holder=_HOLDER)})")
        parts.append(f"sb AS ({_BLOCKED.format(s=s, src='st', cond='', marked='sm')})")
    return parts


def _start_result(fused: bool) -> str:
    blocked = "array(SELECT uuid FROM sb)" if fused else "'{}'::text[]"
    return f"array(SELECT id::text || ':' || token::text FROM st), {blocked}"


def start_params(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    return {"s_id": [d.tag for d in deliveries], "s_token": [d.token for d in deliveries]}


# The claim: ready messages, due delayed ones and lapsed leases, in (priority, id) order; the
# first ``start`` that never started are started in the same statement.
def _claim_parts(sql: Sql, fused: bool, exclude: bool, queues: int) -> list[str]:
    # Ready messages: one scan per queue, each with ``queue = $q`` so that it walks
    # ``queue_ready`` in (priority, id) order and stops after ``limit`` rows. With
    # ``queue = ANY(...)`` the planner reads every ready row of the queues and sorts them:
    # each claim then costs in proportion to the backlog.
    s = sql.s
    mine = "AND id <> ALL(%(finishing)s::bigint[]) " if exclude else ""
    pick = ("SELECT id, priority, deliveries FROM {s}.queue WHERE app = %(app)s "
            "AND {where} AND {cond} ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED")
    anyq = "queue = ANY(%(queues)s::text[])"
    ready = ["cr{} AS ({})".format(i, pick.format(s=s, where=f"queue = %(q{i})s",
                                                  cond=f"state = {READY}", order="priority, id"))
             for i in range(queues)]
    parts = [
        *ready,
        "cd AS ({})".format(pick.format(s=s, where=anyq, cond=f"state = {DELAYED} AND eta <= %(now)s",
                                        order="eta")),
        "cl AS ({})".format(pick.format(s=s, where=anyq, order="lease_until",
                                        cond=f"state = {LEASED} AND lease_until < %(now)s {mine}")),
        "cp AS (SELECT id, deliveries, row_number() OVER (PARTITION BY deliveries = 0 "
        "ORDER BY priority, id) AS k FROM (SELECT * FROM (SELECT * FROM "
        + " UNION ALL SELECT * FROM ".join([f"cr{i}" for i in range(queues)] + ["cd", "cl"])
        + ") u ORDER BY priority, id LIMIT %(limit)s) p)",
        f"cu AS (UPDATE {s}.queue q SET state = {LEASED}, lease_until = %(until)s, "
        "worker = %(worker)s, token = q.token + 1, deliveries = q.deliveries + "
        "CASE WHEN cp.deliveries = 0 AND cp.k <= %(start)s THEN 1 ELSE 0 END FROM cp "
        "WHERE q.id = cp.id RETURNING q.id, q.uuid, q.payload, cp.deliveries AS before, "
        "q.priority, q.queue, q.token, (cp.deliveries = 0 AND cp.k <= %(start)s) AS started)",
    ]
    if fused:
        parts.append(f"cm AS ({_MARK.format(s=s, src='cu', cond='c.started AND', holder=_HOLDER)})")
        parts.append(f"cb AS ({_BLOCKED.format(s=s, src='cu', cond='c.started AND', marked='cm')})")
    return parts


def _claim_result(sql: Sql, fused: bool) -> str:
    blocked = "array(SELECT uuid FROM cb)" if fused else "'{}'::text[]"
    columns = ", ".join(f"array(SELECT {c} FROM cu ORDER BY priority, id)" for c in
                        ("id", "uuid", "payload", "before", "priority", "queue", "token", "started"))
    # a claim that took fewer than it could found the ready rows gone: the worker may wait for
    # a notice next, and this says for how long at most (what next_wake_sql asks on its own)
    wake = (f"CASE WHEN (SELECT count(*) FROM cu) < %(limit)s THEN ({next_wake_sql(sql)}) END")
    return f"{columns}, {blocked}, {wake}"


@functools.lru_cache(maxsize=64)
def exchange_sql(sql: Sql, finish: bool, start: bool, claim: bool, fused: bool = True,
                 queues: int = 1, extras: bool = True) -> str:
    """One worker round trip as one statement: any of finish, start and claim."""
    parts: list[str] = []
    results: list[str] = []
    if finish:
        parts += _finish_parts(sql, fused, extras)
        results.append(_finish_result(fused, extras))
    if start:
        parts += _start_parts(sql, fused)
        results.append(_start_result(fused))
    if claim:
        parts += _claim_parts(sql, fused, exclude=finish and fused, queues=queues)
        results.append(_claim_result(sql, fused))
    if finish:
        return _generic(f"WITH {', '.join(parts)} SELECT {', '.join(results)}")
    # Nothing final in it: commit without waiting for the WAL to reach the disk. A crash can
    # only forget a claim or a start; the message then comes back for another delivery, whose
    # token fences the lost one (at least once, as after any lost lease). Saves a WAL flush
    # between a task's arrival and its start.
    parts.append("nc AS (SELECT set_config('synchronous_commit', 'off', true))")
    return _generic(f"WITH {', '.join(parts)} SELECT {', '.join(results)} FROM nc")


def claim_params(worker: str, queues: Sequence[str], limit: int, lease: float, start: int,
                 now: float) -> dict[str, Any]:
    return {"worker": worker, "queues": list(queues), "limit": limit, "until": now + lease,
            "start": start, **{f"q{i}": queue for i, queue in enumerate(queues)}}


def parse_deliveries(columns: Sequence[Sequence[Any]]) -> list[Delivery]:
    """The claim's deliveries, sent as one array per column (psycopg decodes arrays in C)."""
    return [Delivery(tag, uuid, payload, before, priority, queue, token, started)
            for tag, uuid, payload, before, priority, queue, token, started
            in zip(*columns, strict=True)]


@functools.lru_cache(maxsize=16)
def next_wake_sql(sql: Sql) -> str:
    """When a delayed message of the queues becomes due, or a lease in them lapses (seconds)."""
    s = sql.s
    return (f"SELECT least((SELECT min(eta) FROM {s}.queue WHERE app = %(app)s AND "
            f"state = {DELAYED} AND queue = ANY(%(queues)s::text[])), (SELECT min(lease_until) "
            f"FROM {s}.queue WHERE app = %(app)s AND state = {LEASED} AND "
            "queue = ANY(%(queues)s::text[]))) - %(now)s")


# -- the other operations ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def statements(sql: Sql) -> dict[str, str]:
    s = sql.s
    held = ("sv AS (SELECT * FROM unnest(%(s_id)s::bigint[], %(s_token)s::bigint[]) "
            "AS sv(id, token))")
    found = {
        "delete_held": (f"WITH {held} DELETE FROM {s}.queue q USING sv "
                        "WHERE q.id = ANY(%(s_id)s::bigint[]) AND q.id = sv.id "
                        "AND q.token = sv.token RETURNING q.id"),
        "release": (f"WITH {held}, rl AS (UPDATE {s}.queue q SET state = %(state)s, eta = %(eta)s, "
                    "lease_until = NULL, worker = NULL, token = q.token + 1 FROM sv "
                    "WHERE q.id = ANY(%(s_id)s::bigint[]) AND q.id = sv.id "
                    "AND q.token = sv.token RETURNING q.queue), "
                    f"w AS ({_wake(sql, 'rl')}) SELECT count(*) FROM w"),
        "mark_queued": (f"UPDATE {s}.records r SET status = 'new', holder = NULL FROM "
                        "unnest(%(m_uuid)s::text[], %(m_holder)s::text[]) AS m(uuid, holder) "
                        "WHERE r.app = %(app)s AND r.uuid = m.uuid AND r.status = 'process' "
                        "AND r.holder = m.holder"),
        "mark_running": (
            "WITH c AS (SELECT * FROM unnest(%(m_uuid)s::text[], %(m_holder)s::text[]) "
            "AS c(uuid, holder)), "
            f"sm AS ({_MARK.format(s=s, src='c', cond='', holder='c.holder')}), "
            f"sb AS ({_BLOCKED.format(s=s, src='c', cond='', marked='sm')}) "
            "SELECT array(SELECT uuid FROM sb)"),
        "extend": (f"WITH {held} UPDATE {s}.queue q SET lease_until = %(until)s FROM sv "
                   "WHERE q.id = ANY(%(s_id)s::bigint[]) AND q.id = sv.id "
                   f"AND q.token = sv.token AND q.state = {LEASED} "
                   "AND q.lease_until >= %(now)s RETURNING q.id, q.token"),
        "discard": (f"DELETE FROM {s}.queue WHERE app = %(app)s AND uuid = %(uuid)s "
                    f"AND state <> {LEASED}"),
        "queue_stats": (f"SELECT queue, count(*) FILTER (WHERE state <> {LEASED}), "
                        f"count(*) FILTER (WHERE state = {LEASED}), "
                        f"count(*) FILTER (WHERE state = {DELAYED} AND eta > %(now)s) "
                        f"FROM {s}.queue WHERE app = %(app)s GROUP BY queue ORDER BY queue"),
        "flush_queue": f"DELETE FROM {s}.queue WHERE app = %(app)s",
        "get": f"SELECT {_COLUMNS} FROM {s}.records WHERE app = %(app)s AND uuid = %(uuid)s",
        # The record, marked watched unless final, in one round trip: the update's row when
        # it marked one (a third column, true), else the row as the statement's snapshot saw
        # it. That row is stale only when a final write committed while the update waited for
        # its lock: then it is not final, and ``watch_op`` reads it again.
        "watch": (f"WITH w AS (UPDATE {s}.records SET watched = true WHERE app = %(app)s "
                  f"AND uuid = %(uuid)s AND status NOT IN {_FINAL} RETURNING {_COLUMNS}) "
                  f"SELECT {_COLUMNS}, true FROM w UNION ALL SELECT {_COLUMNS}, false "
                  f"FROM {s}.records WHERE app = %(app)s AND uuid = %(uuid)s "
                  "AND NOT EXISTS (SELECT FROM w)"),
        "cancel": (
            f"WITH c AS (UPDATE {s}.records SET status = 'cancel', updated_at = %(now)s, "
            "extra = (coalesce(extra, '{}')::jsonb || jsonb_build_object('cancel_reason', "
            "%(reason)s::text))::text WHERE app = %(app)s AND uuid = %(uuid)s AND status = 'new' "
            "RETURNING uuid, watched), "
            f"n AS (SELECT pg_notify('{sql.done_channel}', %(app)s || '|' || uuid) FROM c "
            "WHERE watched) SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM n)"),
        "cancel_fused": (
            f"WITH c AS (UPDATE {s}.records SET status = 'cancel', updated_at = %(now)s, "
            "extra = (coalesce(extra, '{}')::jsonb || jsonb_build_object('cancel_reason', "
            "%(reason)s::text))::text WHERE app = %(app)s AND uuid = %(uuid)s AND status = 'new' "
            "RETURNING uuid, watched), "
            # SKIP LOCKED: a claim holding the message will see the cancel at its start
            # (waiting on it in the other order would deadlock with that claim)
            f"d AS (DELETE FROM {s}.queue WHERE id IN (SELECT id FROM {s}.queue WHERE "
            f"app = %(app)s AND uuid IN (SELECT uuid FROM c) AND state <> {LEASED} "
            "FOR UPDATE SKIP LOCKED)), "
            f"n AS (SELECT pg_notify('{sql.done_channel}', %(app)s || '|' || uuid) FROM c "
            "WHERE watched) SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM n)"),
        # the rows to delete picked once, in a CTE: written as ``id IN (SELECT ... LIMIT n
        # FOR UPDATE SKIP LOCKED)`` the planner may run the subquery again for each outer row,
        # and one call then deleted 1,200 rows with a limit of 500
        "purge": (f"WITH doomed AS MATERIALIZED (SELECT id FROM {s}.queue WHERE "
                  f"app = %(app)s AND queue = %(queue)s AND state <> {LEASED} ORDER BY id "
                  f"LIMIT %(limit)s FOR UPDATE SKIP LOCKED) DELETE FROM {s}.queue q USING doomed "
                  "WHERE q.id = doomed.id RETURNING q.uuid"),
        "delete_dead_letters": (f"DELETE FROM {s}.dead_letters WHERE app = %(app)s AND "
                                "id = ANY(%(ids)s::bigint[]) RETURNING 1"),
        "dead_letters": ("SELECT id, uuid, task_name, reason, payload, deliveries, created_at "
                         f"FROM {s}.dead_letters WHERE app = %(app)s ORDER BY id DESC "
                         "LIMIT %(limit)s"),
        "heartbeat": (
            f"INSERT INTO {s}.workers (id, app, hostname, pid, started_at, heartbeat_at, "
            "expires_at, concurrency, queues, running, finished, failed, busy_seconds) VALUES "
            "(%(id)s, %(app)s, %(hostname)s, %(pid)s, %(started_at)s, %(now)s, %(expires)s, "
            "%(concurrency)s, %(queues)s, %(running)s, %(finished)s, %(failed)s, %(busy)s) "
            "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
            "expires_at = excluded.expires_at, running = excluded.running, "
            "finished = excluded.finished, failed = excluded.failed, "
            "busy_seconds = excluded.busy_seconds"),
        "forget_workers": f"DELETE FROM {s}.workers WHERE app = %(app)s AND expires_at < %(old)s",
        "unregister": f"DELETE FROM {s}.workers WHERE id = %(id)s",
        "live_workers": (f"SELECT hostname, pid FROM {s}.workers WHERE app = %(app)s "
                         "AND expires_at > %(now)s"),
        "workers": (f"SELECT id, hostname, pid, started_at, heartbeat_at, concurrency, queues, "
                    f"running, finished, failed, busy_seconds FROM {s}.workers "
                    "WHERE app = %(app)s AND expires_at > %(now)s ORDER BY started_at, id"),
        # Expiry in slices, each a short transaction: records final and untouched since the
        # cutoff (found through ``records_created``: a record is older than its last update).
        "expire_records": (
            f"DELETE FROM {s}.records WHERE (app, uuid) IN (SELECT app, uuid FROM {s}.records "
            "WHERE app = %(app)s AND created_at < %(cutoff)s AND updated_at < %(cutoff)s "
            "AND status IN ('success', 'error', 'cancel', 'retry') LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED)"),
        "expire_dead_letters": (
            f"DELETE FROM {s}.dead_letters WHERE id IN (SELECT id FROM {s}.dead_letters "
            "WHERE app = %(app)s AND created_at < %(cutoff)s LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED)"),
        "dead_letter_count": f"SELECT count(*) FROM {s}.dead_letters WHERE app = %(app)s",
        "store_stats": (f"SELECT (SELECT count(*) FROM {s}.records WHERE app = %(app)s), "
                        f"(SELECT count(*) FROM {s}.dead_letters WHERE app = %(app)s)"),
        "dead_rows": ("SELECT relname, n_dead_tup, n_live_tup, n_mod_since_analyze "
                      "FROM pg_stat_user_tables "
                      "WHERE schemaname = %(schema)s AND relname IN ('queue', 'records', "
                      "'dead_letters')"),
        "flush_records": f"DELETE FROM {s}.records WHERE app = %(app)s",
        "flush_dead_letters": f"DELETE FROM {s}.dead_letters WHERE app = %(app)s",
    }
    for name in ("delete_held", "release", "mark_queued", "mark_running", "extend", "discard",
                 "get", "watch", "heartbeat", "cancel", "cancel_fused", "delete_dead_letters"):
        _generic(found[name])
    return found


def search_sql(sql: Sql, status: str | None, task_name: str | None, before: float | None,
               cursor: bool = False, queue: bool = False) -> str:
    where = ["app = %(app)s"]
    if queue:
        where.append("queue = %(queue)s")
    if status is not None:
        where.append("status = %(status)s")
    if task_name is not None:
        where.append("task_name = %(task_name)s")
    if before is not None:
        where.append("created_at < %(before)s")
    if cursor:
        where.append("(created_at, uuid) < (%(after_created)s, %(after_uuid)s)")
    return (f"SELECT {_COLUMNS} FROM {sql.s}.records WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, uuid DESC LIMIT %(limit)s")


def worker_row(row: Sequence[Any]) -> WorkerRow:
    wid, hostname, pid, started_at, heartbeat_at, concurrency, queues, running, finished, \
        failed, busy = row
    return WorkerRow(id=wid, hostname=hostname, pid=pid, started_at=started_at,
                     heartbeat_at=heartbeat_at, concurrency=concurrency,
                     queues=tuple(queues.split(",")), running=running, finished=finished,
                     failed=failed, busy_seconds=busy)


def record(row: Sequence[Any]) -> RecordRow:
    return dict(zip(RECORD_COLUMNS, row, strict=True))  # type: ignore[return-value]


def dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(*row)


def queue_stats(rows: Sequence[Sequence[Any]]) -> QueueStats:
    stats = QueueStats()
    for queue, waiting, running, delayed in rows:
        stats.queued += waiting
        stats.running += running
        stats.delayed += delayed
        if waiting:
            stats.by_queue[queue] = waiting
    return stats


def store_stats(row: Sequence[Any]) -> StoreStats:
    return StoreStats(records=row[0], dead_letters=row[1])


def heartbeat_params(app: str, info: WorkerInfo, lease: float, now: float) -> dict[str, Any]:
    return {"app": app, "id": info.id, "hostname": info.hostname, "pid": info.pid,
            "started_at": info.started_at, "now": now, "expires": now + lease,
            "concurrency": info.concurrency, "queues": ",".join(info.queues),
            "running": info.running, "finished": info.finished, "failed": info.failed,
            "busy": info.busy_seconds, "old": now - 3600}


# -- operations that take more than one statement ---------------------------------------------------

Step = tuple[str, dict[str, Any]]
"""``(statement, parameters)``: the driver runs it and sends back its rows (a list of tuples)."""
Steps = Generator[Step, Any, Any]


class Careful(Exception):
    """Raised by a driver into an operation whose single statement failed on a value: the
    operation then writes its rows one by one to find which cannot be stored."""


@dataclass(slots=True)
class Claimed(Exchange):
    """An exchange's answer, and ``wake``: when its claim took fewer messages than it asked
    for, the seconds until a delayed message of its queues is due or a lease in them runs out
    (``None``: nothing pending, or the claim was full, or there was no claim)."""

    wake: float | None = None


def exchange(sql: Sql, app: str, worker: str, queues: Sequence[str], limit: int, lease: float,
             finished: Sequence[Outcome], started: Sequence[Delivery], start: int, now: float,
             fused: bool = True) -> Steps:
    """A worker round trip; returns a :class:`Claimed`. One statement, unless an outcome
    cannot be stored (then each outcome is written alone, one statement each) or a started
    task turns out cancelled (then its message is deleted by a second statement)."""
    result = Claimed()
    claim = limit > 0
    if not (claim or finished or started):
        return result
    single = _distinct(finished, started)
    params: dict[str, Any] = {"app": app, "now": now}
    if claim:
        params.update(claim_params(worker, queues, limit, lease, start, now))
    if finished and single:
        params.update(outcome_params(app, finished, now, fused))
        if claim and fused:
            params["finishing"] = [o.delivery.tag for o in finished if o.delivery.tag is not None]
    if started:
        params.update(start_params(started))
    if finished and not single:
        yield from _finish_one_by_one(sql, app, finished, now, fused, result)
        finished = ()
        if not (started or claim):
            return result
    extras = any(o.follow_up is not None or o.dead_letter for o in finished)
    text = exchange_sql(sql, bool(finished), bool(started), claim, fused, len(queues), extras)
    try:
        row = (yield (text, params))[0]
    except Careful:
        # an outcome's value cannot be stored: the statement did nothing; learn which
        yield from _finish_one_by_one(sql, app, finished, now, fused, result)
        finished = ()
        if not (started or claim):
            return result
        params.pop("finishing", None)
        row = (yield (exchange_sql(sql, False, bool(started), claim, fused, len(queues)),
                      params))[0]
    column = 0
    if finished:
        taken = set(row[column])
        result.rejected.extend(o for i, o in enumerate(finished, 1) if i not in taken)
        column += 3
    if started:
        counted, blocked_uuids = set(row[column]), set(row[column + 1])
        column += 2
        for d in started:
            if holder(d) in counted:  # this delivery's own token, not another of the message
                d.started = True
            else:
                result.refused.append(d)
        if blocked_uuids:
            gone = [d for d in started if d.started and d.uuid in blocked_uuids]
            result.refused.extend(gone)
            yield from _delete_held(sql, gone)
    if claim:
        fetched = parse_deliveries(row[column:column + 8])
        result.wake = row[column + 9]
        blocked_uuids = set(row[column + 8])
        if blocked_uuids:
            gone = [d for d in fetched if d.started and d.uuid in blocked_uuids]
            yield from _delete_held(sql, gone)
            ids = {id(d) for d in gone}
            fetched = [d for d in fetched if id(d) not in ids]
        result.deliveries = fetched
    return result


def _distinct(finished: Sequence[Outcome], started: Sequence[Delivery]) -> bool:
    """Whether the batch can be written by one statement: no task or message twice in it (one
    statement cannot change a row twice; one at a time, the order decides)."""
    uuids = [o.uuid for o in finished]
    tags = [o.delivery.tag for o in finished if o.delivery.tag is not None]
    return (len(set(uuids)) == len(uuids) and len(set(tags)) == len(tags)
            and len({d.tag for d in started}) == len(started))


def _finish_one_by_one(sql: Sql, app: str, outcomes: Sequence[Outcome], now: float, fused: bool,
                       into: Exchange | FinishReport) -> Steps:
    """Each outcome in its own transaction: rejected, unstorable or taken, one at a time."""
    text = finish_sql(sql, fused)
    for o in outcomes:
        try:
            row = (yield (text, outcome_params(app, [o], now, fused)))[0]
        except Careful as exc:
            into.unstorable.append((o, str(exc.args[0]) if exc.args else repr(exc)))
            continue
        if not row[0]:
            into.rejected.append(o)


def _delete_held(sql: Sql, deliveries: Sequence[Delivery]) -> Steps:
    if deliveries:
        return (yield (statements(sql)["delete_held"], start_params(deliveries)))
    return []


def finish_records(sql: Sql, app: str, outcomes: Sequence[Outcome], now: float) -> Steps:
    """The store role's finish (fenced by each record's holder); returns a FinishReport."""
    report = FinishReport()
    if not outcomes:
        return report
    if _distinct(outcomes, ()):
        try:
            row = (yield (finish_sql(sql, False), outcome_params(app, outcomes, now, False)))[0]
        except Careful:
            yield from _finish_one_by_one(sql, app, outcomes, now, False, report)
            return report
        taken = set(row[0])
        report.rejected.extend(o for i, o in enumerate(outcomes, 1) if i not in taken)
        return report
    yield from _finish_one_by_one(sql, app, outcomes, now, False, report)
    return report


def finish_messages(sql: Sql, deliveries: Sequence[Delivery]) -> Steps:
    """The broker role's finish: delete the messages still carrying the delivery's token."""
    if len({d.tag for d in deliveries}) == len(deliveries):
        rows = yield from _delete_held(sql, deliveries)
        deleted = {r[0] for r in rows}
        return [d for d in deliveries if d.tag not in deleted]
    lost = []
    for d in deliveries:
        if not (yield from _delete_held(sql, [d])):
            lost.append(d)
    return lost


def start_messages(sql: Sql, app: str, deliveries: Sequence[Delivery], now: float) -> Steps:
    """The broker role's start: count the deliveries under a live lease; return the lost."""
    groups: list[Sequence[Delivery]] = (
        [deliveries] if len({d.tag for d in deliveries}) == len(deliveries)
        else [[d] for d in deliveries])
    lost = []
    for group in groups:
        text = exchange_sql(sql, False, True, False, fused=False)
        row = (yield (text, {"app": app, "now": now, **start_params(group)}))[0]
        counted = set(row[0])
        for d in group:
            if holder(d) in counted:
                d.started = True
            else:
                lost.append(d)
    return lost
