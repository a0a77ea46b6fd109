"""Priorities and concurrency, observed through what the tasks record."""

import asyncio

from apps import async_app, sync_app
from helpers import clear_marks, marks, wait_until


def test_lower_priority_number_runs_first_sync(start_worker):
    app = sync_app.app
    app.flush_all()
    queued = [(p, app.add_task("stamp", priority=p)) for p in (5, 1, 3, 0, 4, -2, 1)]
    start_worker("apps.sync_app:app", "--concurrency", "1")
    done = [(p, app.wait_sync(t.uuid, 20)) for p, t in queued]
    order = [p for p, record in sorted(done, key=lambda pr: pr[1].returning)]
    assert order == [-2, 0, 1, 1, 3, 4, 5]
    # FIFO within one priority
    ones = [record for p, record in done if p == 1]
    assert ones[0].returning < ones[1].returning


def test_lower_priority_number_runs_first_async(start_worker):
    app = async_app.app

    async def enqueue():
        await app.flush_all()
        return [(p, await app.add_task("stamp", priority=p)) for p in (3, -1, 2, 0)]

    queued = asyncio.run(enqueue())
    start_worker("apps.async_app:app", env={"QTASKS_MAX_TASKS_PROCESS": "1"})

    async def collect():
        return [(p, await app.wait_async(t.uuid, 20)) for p, t in queued]

    done = asyncio.run(collect())
    assert [p for p, r in sorted(done, key=lambda pr: pr[1].returning)] == [-1, 0, 2, 3]


def test_eight_sync_tasks_run_at_once_with_concurrency_eight(start_worker):
    app = sync_app.app
    app.flush_all()
    clear_marks()
    start_worker("apps.sync_app:app", "--concurrency", "8")
    tasks = [app.add_task("sleepy", 0.5, tag=str(i)) for i in range(8)]
    spans = [app.wait_sync(t.uuid, 20).returning for t in tasks]
    # all eight were running at the same moment: the last start precedes the first end
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert len(marks()) == 8


def test_worker_waits_for_work_without_missing_any(start_worker):
    app = sync_app.app
    app.flush_all()
    start_worker("apps.sync_app:app")
    for i in range(30):
        assert app.add_task("add", i, 1, timeout=10).returning == i + 1
    wait_until(lambda: app.stats().queued == 0, what="empty queue")
