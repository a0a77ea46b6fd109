"""At-least-once delivery: killed workers, poison tasks, drains, malformed messages."""

import asyncio
import math
import signal
import time
from datetime import datetime
from uuid import uuid4

import pytest

from apps import async_app, sync_app
from apps.marks import MARKS
from helpers import clear_marks, marks, statuses, wait_until

FAST_LEASE = {"QTASKS_VISIBILITY_TIMEOUT": "1.5"}
ALONE = "running it alone"  # the worker's log line for a task in quarantine


@pytest.mark.requires_processes("kills a worker process with SIGKILL")
def test_killed_worker_task_runs_again_and_finishes_once(start_worker):
    app = sync_app.app
    app.flush_all()
    clear_marks()
    first = start_worker("apps.sync_app:app", env=FAST_LEASE)
    task = app.add_task("sleepy", 1.0, tag="k9")
    wait_until(lambda: "start k9" in marks(), what="the task to start")
    first.signal(signal.SIGKILL)
    first.wait(10)
    second = start_worker("apps.sync_app:app", env=FAST_LEASE)
    record = app.wait_sync(task.uuid, 30)
    assert record.status == "success"
    assert marks().count("start k9") == 2  # it ran again (at-least-once) ...
    # the record names the worker that finished it, and that this was the second start
    assert (record.extra["worker"], record.extra["deliveries"]) == (second.worker_id, 2)
    assert record.created_at.timestamp() < record.extra["started_at"] \
        <= record.updated_at.timestamp()
    stats = app.stats()  # ... and ended in one final state, off the queue
    assert (stats.queued, stats.running, stats.records) == (0, 0, 1)
    assert app.dead_letters() == []


@pytest.mark.requires_processes("its poison task ends its worker's process (os._exit), "
                                "under a --processes supervisor")
def test_poison_task_is_dead_lettered_while_normal_tasks_succeed(start_worker):
    app = sync_app.app
    app.flush_all()
    env = {**FAST_LEASE, "QTASKS_MAX_DELIVERIES": "3", "QTASKS_WORKER_PREFETCH": "0"}
    poison = app.add_task("die")
    normal = [app.add_task("add", i, 1) for i in range(100)]
    supervisor = start_worker("apps.sync_app:app", "--processes", "2", "--concurrency", "1",
                              env=env, ready=2)
    records = [app.wait_sync(t.uuid, 60) for t in normal]
    assert [r.status for r in records] == ["success"] * 100
    assert [r.returning for r in records] == [i + 1 for i in range(100)]
    dead = app.wait_sync(poison.uuid, 60)
    assert dead.status == "error"
    assert "WorkerLostError" in dead.traceback
    assert dead.exception == "qtasks.exceptions.WorkerLostError"
    letters = app.dead_letters()
    assert [(d.uuid, d.task_name, d.deliveries) for d in letters] == [(str(poison.uuid), "die", 3)]
    assert supervisor.alive  # the fleet is still up


@pytest.mark.requires_processes("its poison tasks end their worker's process (os._exit), "
                                "under a --processes supervisor")
@pytest.mark.parametrize("poisons", [1, 2, 3])
def test_only_the_task_that_kills_its_worker_is_blamed(start_worker, poisons):
    """Tasks that shared a worker with a killer run again alone, and succeed."""
    app = sync_app.app
    app.flush_all()
    calls = [sync_app.add(i, 1) for i in range(300)]
    for k in range(poisons):  # spread among the quick tasks, so they die beside innocents
        calls.insert(k * 100 + 10, sync_app.die())
    tasks = app.add_tasks(calls)
    env = {**FAST_LEASE, "QTASKS_MAX_DELIVERIES": "2"}
    supervisor = start_worker("apps.sync_app:app", "--processes", "2", "--concurrency", "4",
                              env=env, ready=2)
    records = [app.wait_sync(t.uuid, 90) for t in tasks]
    innocent = [r for r in records if r.task_name == "add"]
    killers = [r for r in records if r.task_name == "die"]
    assert [r.status for r in innocent] == ["success"] * 300
    assert sorted(r.returning for r in innocent) == [i + 1 for i in range(300)]
    assert [(r.status, r.exception) for r in killers] == \
        [("error", "qtasks.exceptions.WorkerLostError")] * poisons
    letters = app.dead_letters()
    assert sorted(d.uuid for d in letters) == sorted(str(r.uuid) for r in killers)
    assert all(d.deliveries == 2 for d in letters)
    assert supervisor.output.count(ALONE) >= poisons  # the killers ran alone before set aside


def test_sigterm_drains_running_tasks_and_hands_back_prefetched(start_worker):
    app = sync_app.app
    app.flush_all()
    clear_marks()
    worker = start_worker("apps.sync_app:app", "--concurrency", "20", "--grace", "10")
    tasks = [app.add_task("sleepy", 2.0, tag=str(i)) for i in range(30)]
    wait_until(lambda: len(marks()) == 20, what="20 running tasks")
    time.sleep(0.2)  # the worker has had time to prefetch the other 10
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    took = time.monotonic() - sent
    assert took < 10 + 1
    statuses = [app.get(t.uuid).status for t in tasks]
    assert statuses.count("success") == 20
    assert statuses.count("new") == 10  # handed back, not lost ...
    assert (app.stats().queued, app.stats().running) == (10, 0)
    second = start_worker("apps.sync_app:app", "--concurrency", "20")
    assert all(app.wait_sync(t.uuid, 30).status == "success" for t in tasks)
    assert len(marks()) == 30
    assert ALONE not in second.output  # ... and not counted: they had never started


def _malformed_payloads():
    yield from ["", "not json", "[1, 2]", "42", "null", '{"v": 99}']
    base = {"v": 1, "uuid": None, "task": "add", "priority": 0, "created_at": 1.0,
            "args": [1], "kwargs": {}}
    for field, value in [("task", 5), ("task", ""), ("args", "x"), ("kwargs", []),
                         ("priority", "high"), ("created_at", "now"), ("uuid", "zzz"),
                         ("task", "no_such_task")]:
        yield {**base, field: value}


def test_malformed_rows_are_dead_lettered_and_good_tasks_done(start_worker):
    import json

    app = sync_app.app
    app.flush_all()
    good = [app.add_task("add", i, 2) for i in range(1000)]
    kinds = list(_malformed_payloads())
    rows = []
    for i in range(400):
        kind = kinds[i % len(kinds)]
        if isinstance(kind, dict):
            kind = json.dumps({**kind, "uuid": kind["uuid"] or str(uuid4())})
        rows.append((str(uuid4()) if i % 2 else None, kind, i % 3))
    for uuid, payload, priority in rows:
        app.backend.insert_raw(payload, priority=priority, uuid=uuid)
    worker = start_worker("apps.sync_app:app")
    records = [app.wait_sync(t.uuid, 60) for t in good]
    assert all(r.status == "success" for r in records)
    wait_until(lambda: len(app.dead_letters(1000)) == 400, what="400 dead letters")
    letters = app.dead_letters(1000)
    assert all(d.reason for d in letters)
    assert {d.reason.split(":")[0] for d in letters} == {"MalformedMessage", "UnknownTaskError"}
    assert worker.alive
    assert worker.output.count(" ready: app ") == 1  # never restarted
    assert app.stats().queued == 0


BAD_VALUES = [datetime(2026, 1, 1), {1, 2}, b"bytes", object(), math.nan, math.inf]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: type(v).__name__)
def test_non_json_arguments_raise_type_error_sync(bad):
    app = sync_app.app
    before = app.stats()
    with pytest.raises(TypeError, match="positional argument 1"):
        app.add_task("add", 1, bad)
    with pytest.raises(TypeError, match="argument 'b'"):
        sync_app.add.add_task(1, b=bad)
    with pytest.raises(TypeError, match="argument 'when'"):
        app.add_task("add", 1, when=[1, {"x": bad}])
    assert app.stats() == before


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: type(v).__name__)
def test_non_json_arguments_raise_type_error_async(bad):
    import asyncio

    app = async_app.app

    async def scenario():
        before = await app.stats()
        with pytest.raises(TypeError, match="positional argument 0"):
            await app.add_task("add", bad)
        with pytest.raises(TypeError, match="argument 'b'"):
            await async_app.add.add_task(1, b=bad)
        return before, await app.stats()

    before, after = asyncio.run(scenario())
    assert before == after


def test_heartbeat_keeps_a_long_task_with_its_worker(start_worker):
    app = sync_app.app
    app.flush_all()
    clear_marks()
    for _ in range(2):  # an idle second worker would take the task over if its lease lapsed
        start_worker("apps.sync_app:app", env=FAST_LEASE)
    task = app.add_task("sleepy", 4.0, tag="long")  # far longer than the 1.5 s lease
    record = app.wait_sync(task.uuid, 30)
    assert record.status == "success"
    assert marks().count("start long") == 1  # no other worker took it over


def test_second_signal_stops_at_once_and_hands_the_task_back(start_worker):
    app = sync_app.app
    app.flush_all()
    clear_marks()
    worker = start_worker("apps.sync_app:app", "--grace", "60")
    task = app.add_task("sleepy", 30.0, tag="hard")
    wait_until(lambda: "start hard" in marks(), what="the task to start")
    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.signal(signal.SIGINT)
    assert worker.wait(10) == 1  # tasks were abandoned
    assert time.monotonic() - sent < 10
    assert app.get(task.uuid).status == "new"
    assert (app.stats().queued, app.stats().running) == (1, 0)  # back in the queue at once
    clear_marks()
    second = start_worker("apps.sync_app:app", "--grace", "1")
    wait_until(lambda: "start hard" in marks(), what="the task to start again")
    assert ALONE in second.output  # this delivery counted: it had started


def _flush_and_add(app, flavour, calls):
    """Empty the app, then enqueue ``calls`` in one bulk call, on either flavour of app."""
    if flavour == "sync":
        app.flush_all()
        return app.add_tasks(calls)
    asyncio.run(app.flush_all())
    return asyncio.run(app.add_tasks(calls))


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_quick_tasks_never_run_more_than_concurrency_at_once(start_worker, flavour):
    """Quick tasks go many to a round trip (the lane), still no more than ``concurrency``
    running at once."""
    module = sync_app if flavour == "sync" else async_app
    app = module.app
    calls = [module.overlap() for _ in range(1500)]
    tasks = _flush_and_add(app, flavour, calls)
    start_worker(f"apps.{flavour}_app:app", "--concurrency", "3")
    records = [app.wait_sync(t.uuid, 60) for t in tasks]
    assert {r.status for r in records} == {"success"}
    seen = [r.returning for r in records]
    assert max(seen) <= 3
    assert max(seen) > 1  # they did overlap: the test can see a breach


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_next_task_starts_ahead_of_a_long_task_end(start_worker, flavour):
    """A task longer than a round trip has its successor's start recorded shortly before it
    is expected to end (after the typical run time of its name), so that the successor takes
    the slot the moment it frees: near its end, such a task sees the next one started already,
    with concurrency 1. The first run of a name has no typical time, so no successor early."""
    module = sync_app if flavour == "sync" else async_app
    app = module.app
    nap = sync_app.sleepy if flavour == "sync" else async_app.slow
    calls = [module.peek_after(0.8, flavour), module.peek_after(0.8, flavour), nap(0)]
    tasks = _flush_and_add(app, flavour, calls)
    (MARKS.parent / f"peek-{flavour}").write_text(str(tasks[2].uuid))  # both peek at the last
    start_worker(f"apps.{flavour}_app:app", "--concurrency", "1")
    records = [app.wait_sync(t.uuid, 30) for t in tasks]
    assert [r.status for r in records] == ["success"] * 3
    assert [r.returning for r in records[:2]] == ["new", "process"]


def test_sigterm_amid_quick_tasks_leaves_each_finished_or_queued(start_worker):
    """Tasks whose start was recorded (running, or waiting in the lane for a slot) finish in
    the grace period; the rest go back uncounted. Nothing stays 'process'."""
    app = sync_app.app
    app.flush_all()
    tasks = app.add_tasks([sync_app.add(i, 1) for i in range(5000)])
    worker = start_worker("apps.sync_app:app", "--concurrency", "4", "--grace", "20")
    uuids = [str(t.uuid) for t in tasks]
    wait_until(lambda: app.stats().queued < 4000, what="a quarter of the tasks to run")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    counts = statuses(app, uuids)
    assert set(counts) <= {"success", "new"}, counts
    assert counts.get("new", 0) > 0  # the stop came mid-run: the test saw a drain
    assert (app.stats().queued, app.stats().running) == (counts.get("new", 0), 0)
    second = start_worker("apps.sync_app:app", "--concurrency", "4")
    records = [app.wait_sync(uuid, 60) for uuid in uuids]
    assert [r.returning for r in records] == [i + 1 for i in range(5000)]
    assert ALONE not in second.output  # none was handed back counted
