"""The embedded backend's worker round trip on its own: what one ``exchange`` costs in SQLite.

Run from the repository root::

    .venv/bin/python benchmarks/exchange.py [--tasks N] [--batch K] [--json]

No worker, no event loop, no threads: the store's functions are called directly on one
connection, in the order the worker's round trips make them. Round trip ``n`` claims ``K``
messages, starts the ``K`` claimed by round trip ``n - 1`` and writes the outcomes of the ``K``
started by round trip ``n - 2`` (a no-op's ``success``), so every round trip carries a full
batch of each, as a busy worker's do. Each step is timed separately:

- ``finish``: the transaction begun, outcomes written, their messages deleted (fenced by
  token);
- ``start``: starts counted on the messages (fenced by token);
- ``mark``: records marked running (the check for tasks cancelled meanwhile included);
- ``claim``: the next batch leased;
- ``commit``: the transaction's commit, with the automatic WAL checkpoints that fall in it.

A second, short pass with automatic checkpoints off counts the pages each commit appends to
the write-ahead log. Compare runs of this script on the same machine; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from qtasks import QueueTasks
from qtasks.backends.base import Delivery, FinishReport, Outcome
from qtasks.backends.sqlite import store

STEPS = ("finish", "start", "mark", "claim", "commit")


def _prepare(folder: Path, name: str, tasks: int) -> tuple[sqlite3.Connection, QueueTasks]:
    path = folder / f"{name}.sqlite3"
    app = QueueTasks(name="bench", broker_url=f"sqlite:///{path}")
    conn = store.connect(str(path), False)
    store.ensure_schema(conn)
    new = [app._prepare("noop", (), {}, 0, None, "default") for _ in range(tasks)]
    for i in range(0, tasks, 500):
        store.enqueue(conn, "bench", new[i:i + 500])
    return conn, app


def _outcomes(deliveries: list[Delivery]) -> list[Outcome]:
    return [Outcome(delivery=d, uuid=d.uuid or "", status="success", task_name="noop",
                    priority=d.priority, returning_json="null") for d in deliveries]


def run_pipeline(conn: sqlite3.Connection, tasks: int, batch: int,
                 times: dict[str, list[float]] | None) -> int:
    """Round trips until ``tasks`` outcomes are written; returns how many round trips."""
    claimed: list[Delivery] = []
    running: list[Delivery] = []
    done = trips = 0
    clock = time.perf_counter
    while done < tasks:
        finished = _outcomes(running)
        marks = [clock()]
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        if finished:
            report = FinishReport()
            store._write_outcomes(conn, "bench", finished, now, report, fenced=False,
                                  with_messages=True)
            assert not report.rejected and not report.unstorable
        marks.append(clock())
        if claimed:
            assert store._start(conn, claimed) == []
        marks.append(clock())
        if claimed:
            assert store._mark_running(conn, "bench", claimed, now) == set()
        marks.append(clock())
        fetched = store._claim(conn, "bench", "w", ("default",), batch, 300.0, 0, now)
        marks.append(clock())
        conn.execute("COMMIT")
        marks.append(clock())
        if times is not None:
            for step, (begin, end) in zip(STEPS, itertools.pairwise(marks), strict=True):
                times[step].append(end - begin)
        done += len(finished)
        running, claimed = claimed, fetched
        trips += 1
    return trips


def wal_pages_per_commit(folder: Path, batch: int, trips: int = 250) -> float:
    conn, app = _prepare(folder, "wal", batch * (trips + 2))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        made = run_pipeline(conn, batch * trips, batch, None)
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames / made
    finally:
        conn.close()
        app.client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks to drain")
    parser.add_argument("--batch", type=int, default=8,
                        help="deliveries per round trip, for each step (default 8)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary databases go")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.batch < 1:
        parser.error("--tasks and --batch must be positive")
    with tempfile.TemporaryDirectory(prefix="qtasks-exchange-", dir=args.tmp_dir) as tmp:
        folder = Path(tmp)
        conn, app = _prepare(folder, "drain", args.tasks)
        times: dict[str, list[float]] = {step: [] for step in STEPS}
        try:
            started = time.perf_counter()
            trips = run_pipeline(conn, args.tasks, args.batch, times)
            elapsed = time.perf_counter() - started
        finally:
            conn.close()
            app.client.close()
        pages = wal_pages_per_commit(folder, args.batch)
    per_trip = {step: statistics.fmean(values) * 1e6 for step, values in times.items()}
    result = {"tasks": args.tasks, "batch": args.batch, "round_trips": trips,
              "tasks_per_s": args.tasks / elapsed, "us_per_round_trip": elapsed / trips * 1e6,
              "us_per_step": per_trip, "wal_pages_per_commit": pages,
              "sqlite": sqlite3.sqlite_version, "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.tasks} tasks in round trips of {args.batch}; SQLite {result['sqlite']}, "
          f"Python {result['python']}")
    print(f"{result['tasks_per_s']:,.0f} tasks/s, {result['us_per_round_trip']:.0f} us per round "
          f"trip: " + ", ".join(f"{step} {us:.0f}" for step, us in per_trip.items()))
    print(f"{pages:.1f} WAL pages appended per commit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
