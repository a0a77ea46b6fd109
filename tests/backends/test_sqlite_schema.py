"""A database file written by an earlier release is upgraded in place when it is opened."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from tests.backends.test_contract import outcome

from qtasks import QueueTasks
from qtasks.backends.sqlite import store

# The tables of schema 3 as that release created them (records keyed by uuid, WITHOUT ROWID).
SCHEMA_3 = """
CREATE TABLE records (
    uuid TEXT PRIMARY KEY, app TEXT NOT NULL, task_name TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL, args TEXT NOT NULL, kwargs TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, "returning" TEXT, traceback TEXT,
    extra TEXT, holder TEXT
) WITHOUT ROWID;
CREATE TABLE queue (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, uuid TEXT, queue TEXT NOT NULL DEFAULT 'default',
    priority INTEGER NOT NULL DEFAULT 0, eta REAL NOT NULL DEFAULT 0, payload TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0, lease_until REAL, worker TEXT,
    token INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_order ON queue (app, queue, priority, id);
CREATE INDEX queue_lease ON queue (app, lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX queue_worker ON queue (worker) WHERE worker IS NOT NULL;
CREATE INDEX queue_delayed ON queue (app, eta) WHERE eta > 0;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, uuid TEXT, task_name TEXT, reason TEXT NOT NULL,
    payload TEXT, deliveries INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
);
CREATE TABLE workers (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, hostname TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, expires_at REAL NOT NULL,
    concurrency INTEGER NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX records_created ON records (app, created_at);
"""


def _old_file(path, version):
    """A file of schema ``version`` (2 or 3) holding one finished and one queued task."""
    writer = QueueTasks(name="old", broker_url="sqlite://:memory:old-writer")
    done, queued = (writer._prepare("job", (i,), {}, 0) for i in range(2))
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_3)
    columns = "app, uuid, task_name, priority, status, args, kwargs, created_at, updated_at"
    for task, status in ((done, "success"), (queued, "new")):
        conn.execute(f"INSERT INTO records ({columns}, \"returning\") VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     ("old", task.uuid, task.task_name, task.priority, status, task.args_json,
                      task.kwargs_json, task.created_at, time.time(),
                      "7" if status == "success" else None))
    conn.execute("INSERT INTO queue (app, uuid, queue, priority, payload) VALUES (?, ?, ?, ?, ?)",
                 ("old", queued.uuid, "default", 0, queued.envelope))
    if version == 2:  # schema 2 had neither fencing tokens nor holders
        conn.execute("ALTER TABLE queue DROP COLUMN token")
        conn.execute("ALTER TABLE records DROP COLUMN holder")
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    conn.commit()
    conn.close()
    writer.client.close()
    return done, queued


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_file_is_upgraded_and_keeps_its_tasks(tmp_path, version):
    path = tmp_path / "old.sqlite3"
    done, queued = _old_file(path, version)
    app = QueueTasks(name="old", broker_url=f"sqlite:///{path}")
    assert app.get(done.uuid).status == "success"
    assert app.get(done.uuid).returning == 7
    assert app.get(queued.uuid).status == "new"
    stats = app.stats()
    assert (stats.queued, stats.records) == (1, 2)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM meta").fetchone()[0] == store.SCHEMA_VERSION
        records_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'records'").fetchone()[0]
        assert "WITHOUT ROWID" not in records_sql
        indexes = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_created" in indexes and "queue_worker" not in indexes
    finally:
        conn.close()

    # the queued task is still there for a worker, and its outcome lands on its record
    transport = app.transport

    async def drain():
        got = await transport.exchange("w", ("default",), limit=5, lease=30.0, start=5)
        assert [d.uuid for d in got.deliveries] == [queued.uuid]
        result = await transport.exchange("w", ("default",), limit=0, lease=30.0,
                                          finished=[outcome(got.deliveries[0], result=3)])
        assert result.rejected == []
        await transport.close()

    asyncio.run(drain())
    assert app.get(queued.uuid).returning == 3
    app.client.close()
