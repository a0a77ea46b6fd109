"""How long the dashboard's pages take with many records (issue: "pagination that stays fast
on 1,000,000 records").

Fills a fresh app with N records (``add_tasks`` in batches; one task in a hundred is ``rare``
and fails, the rest are ``common`` and succeed), runs them with an in-process worker (so the
queue is empty and the records hold 99 % ``success``, 1 % ``error``; ``--no-drain`` leaves
every message waiting), then times each page through the dashboard's ASGI app in process (routing, the store's
queries, the template), median and worst of ``--repeat`` loads::

    .venv/bin/python benchmarks/dashboard_pages.py --records 1000000
    .venv/bin/python benchmarks/dashboard_pages.py --records 1000000 \
        --url 'postgresql://postgres@127.0.0.1:5432/test?schema=qtasks_bench_pages'
    .venv/bin/python benchmarks/dashboard_pages.py --records 1000000 --url redis://127.0.0.1:6379/8

The deep page is the one after the record created in the middle of the run, reached by the
keyset cursor as the "Older" link would reach it. ``status=cancel`` matches no record: the store
must look through every record's status to say so, the worst case of a filter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from starlette.testclient import TestClient

from qtasks import QueueTasks
from qtasks.dashboard import create_app
from qtasks.worker import Worker

BATCH = 5000


def fill(app: QueueTasks, records: int) -> tuple[str, float]:
    """Enqueue ``records`` tasks; the uuid and creation time of the one in the middle."""
    middle: tuple[str, float] = ("", 0.0)
    started = time.perf_counter()
    done = 0
    while done < records:
        n = min(BATCH, records - done)
        calls = [("rare" if (done + i) % 100 == 0 else "common", (done + i,)) for i in range(n)]
        made = app.add_tasks(calls)
        if done <= records // 2 < done + n:
            task = made[records // 2 - done]
            middle = (str(task.uuid), task.created_at.timestamp())
        done += n
        if done % 100_000 < BATCH:
            rate = done / (time.perf_counter() - started)
            print(f"  filled {done:,} ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return middle


def drain(app: QueueTasks, records: int) -> None:
    logging.getLogger("qtasks").setLevel(logging.CRITICAL)  # the rare tasks' failures
    worker = Worker(app, concurrency=20, install_signals=False)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    started = time.perf_counter()
    thread.start()
    while True:
        time.sleep(2)
        left = app.client.queue_stats()
        if left.queued == 0 and left.running == 0:
            break
        done = records - left.queued
        print(f"  ran {done:,} ({done / (time.perf_counter() - started):,.0f}/s)",
              file=sys.stderr, flush=True)
    worker.request_stop()
    thread.join(60)


def timed(client: TestClient, url: str, repeat: int) -> tuple[float, float, int]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    rows = response.text.count('<tr><td>') if "results" in response.text else 0
    return statistics.median(times) * 1000, max(times) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="backend URL (default: a new SQLite file)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-drain", action="store_true", help="leave the tasks waiting")
    parser.add_argument("--analyze", action="store_true",
                        help="PostgreSQL: ANALYZE the tables before timing (what autovacuum "
                             "does in a steady state; right after a drain the statistics still "
                             "describe waiting tasks)")
    parser.add_argument("--keep", action="store_true", help="leave the records behind")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'pages.sqlite3'}"
    app = QueueTasks(name="pages", broker_url=url)

    @app.task
    def common(i: int) -> int:
        return i

    @app.task
    def rare(i: int) -> None:
        raise ValueError(f"rare task {i} fails")

    app.flush_all()
    print(f"backend: {app.backend.describe()}; filling {args.records:,} records", flush=True)
    middle_uuid, middle_at = fill(app, args.records)
    if not args.no_drain:
        drain(app, args.records)
    if args.analyze and url.startswith(("postgres://", "postgresql://")):
        import psycopg

        from qtasks.backends.postgres.connection import parse_url

        settings = parse_url(url)
        with psycopg.connect(settings.conninfo, autocommit=True) as conn:
            conn.execute(f'ANALYZE "{settings.schema}".records, "{settings.schema}".queue')
    client = TestClient(create_app(app))
    cursor = f"{middle_at!r}_{middle_uuid}"
    pages = [
        ("overview", "/"),
        ("tasks, first page", "/tasks"),
        ("tasks, 100 a page", "/tasks?limit=100"),
        ("tasks, deep page (cursor at the middle)", f"/tasks?cursor={cursor}"),
        ("tasks, name filter (1 in 100)", "/tasks?task_name=rare"),
        ("tasks, name filter, deep page", f"/tasks?task_name=rare&cursor={cursor}"),
        ("tasks, status success (99 %)", "/tasks?status=success"),
        ("tasks, status error (1 %)", "/tasks?status=error"),
        ("tasks, status error, deep page", f"/tasks?status=error&cursor={cursor}"),
        ("tasks, status cancel (none: worst case)", "/tasks?status=cancel"),
        ("task detail", f"/tasks/{middle_uuid}"),
        ("dead letters", "/dead-letters"),
    ]
    print(f"{'page':45} {'median ms':>10} {'worst ms':>10}")
    for label, path in pages:
        median, worst, _ = timed(client, path, args.repeat)
        print(f"{label:45} {median:10.1f} {worst:10.1f}", flush=True)
    if args.url and not args.keep:
        app.flush_all()


if __name__ == "__main__":
    main()
