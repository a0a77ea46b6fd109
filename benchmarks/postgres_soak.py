"""Table and index sizes of the PostgreSQL backend over a long run: does anything bloat?

Run from the repository root with the repository's venv (psycopg and qtasks installed)::

    .venv/bin/python benchmarks/postgres_soak.py                      # 200,000 tasks
    .venv/bin/python benchmarks/postgres_soak.py --tasks 20000 --url postgresql://...

It creates the schema ``qtasks_soak`` (dropped first), starts one worker process
(``qtasks run``), and enqueues ``--tasks`` no-op tasks in batches of ``--batch`` while the worker
drains them, keeping at most ``--backlog`` waiting. Every ``--every`` tasks it prints the sizes
(``pg_relation_size``: heap and each index; ``pg_stat_user_tables``: live and dead rows) of the
queue and records tables. Records expire after ``--result-ttl`` seconds (the worker deletes
them as it heartbeats), so in a steady state both tables should stay flat: the queue table
holds only the backlog, and the records table about ``result_ttl`` seconds of history.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from qtasks import QueueTasks
from qtasks.backends.postgres import migrate

APP = '''
from qtasks import QueueTasks
app = QueueTasks(name="soak", broker_url={url!r})

@app.task(name="noop")
def noop(i):
    return None
'''


def sizes(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    out = {}
    for table in ("queue", "records"):
        row = conn.execute(
            "SELECT pg_relation_size(c.oid), "
            "coalesce((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i "
            "WHERE i.indrelid = c.oid), 0), s.n_live_tup, s.n_dead_tup, "
            "s.autovacuum_count + s.vacuum_count FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
        heap, index, live, dead, vacuums = row
        out[table] = (f"heap {heap / 2**20:6.2f} MB, indexes {index / 2**20:6.2f} MB, "
                      f"{live:>7} live, {dead:>6} dead rows, {vacuums} vacuums")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backlog", type=int, default=5_000)
    parser.add_argument("--every", type=int, default=25_000)
    parser.add_argument("--result-ttl", type=float, default=30.0)
    args = parser.parse_args()
    schema = "qtasks_soak"
    url = f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}&result_ttl={args.result_ttl}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    migrate(url)
    folder = Path(tempfile.mkdtemp(prefix="qtasks-soak-"))
    (folder / "soak_app.py").write_text(APP.format(url=url))
    app = QueueTasks(name="soak", broker_url=url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "qtasks", "-A", "soak_app:app", "run", "--loglevel", "WARNING"],
        cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)})
    monitor = psycopg.connect(args.url, autocommit=True)
    started = time.monotonic()
    try:
        print(f"{0:>8} tasks  (before)")
        for table, text in sizes(monitor, schema).items():
            print(f"          {table:8} {text}")
        sent = 0
        while sent < args.tasks:
            while app.stats().queued > args.backlog:
                time.sleep(0.05)
            count = min(args.batch, args.tasks - sent)
            app.add_tasks([("noop", (sent + i,)) for i in range(count)])
            sent += count
            if sent % args.every == 0 or sent == args.tasks:
                print(f"{sent:>8} tasks  {time.monotonic() - started:6.1f} s")
                for table, text in sizes(monitor, schema).items():
                    print(f"          {table:8} {text}")
        while app.stats().queued or app.stats().running:
            time.sleep(0.2)
        print(f"drained after {time.monotonic() - started:.1f} s; 60 s later (autovacuum, "
              "expiry):")
        time.sleep(60)
        for table, text in sizes(monitor, schema).items():
            print(f"          {table:8} {text}")
    finally:
        worker.terminate()
        worker.wait(30)
        monitor.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
